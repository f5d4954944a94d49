"""Deployment records kept with the registered model: what each SageMaker promote planned and did.

Each apply writes one JSON file (the plan plus what was applied, with ARNs) into the artifacts of the
model version's run, under ``deployments/<endpoint>/``, and tags the model version
``dogbreeds.deployment.<endpoint>`` with that folder. Teardown reads every record of the endpoint from
any machine that reaches the tracking server, so it deletes exactly what promotes created, including
Models and EndpointConfigs a later promote superseded.
"""

from __future__ import annotations

import json
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from lightning_app.tracking import no_artifact_progress_bar

TAG_PREFIX = "dogbreeds.deployment."
FORMAT = 1


def record_folder(endpoint: str) -> str:
    return f"deployments/{endpoint}"


def deployment_record(
    plan_dict: dict, applied: list[dict], applied_at: datetime, error: str | None = None
) -> dict:
    return {
        "format": FORMAT,
        "endpoint": plan_dict["endpoint"],
        "run_id": plan_dict["run_id"],
        "applied_at": applied_at.isoformat(),
        "complete": error is None,
        "error": error,
        "plan": plan_dict,
        "applied": applied,
    }


def save_record(client: MlflowClient, model_name: str, version: str, record: dict) -> str:
    """Log the record next to the model version's run and tag the version; returns the artifact URI."""
    run_id = client.get_model_version(model_name, version).run_id
    stamp = datetime.fromisoformat(record["applied_at"]).strftime("%Y%m%dT%H%M%S%fZ")
    folder = record_folder(record["endpoint"])
    path = f"{folder}/{stamp}.json"
    client.log_text(run_id, json.dumps(record, indent=2, sort_keys=True), path)
    client.set_model_version_tag(model_name, version, TAG_PREFIX + record["endpoint"], folder)
    return f"runs:/{run_id}/{path}"


def now() -> datetime:
    return datetime.now(UTC)


def load_records(client: MlflowClient, model_name: str, endpoint: str) -> list[dict]:
    """Every record of ``endpoint`` across the registered model's versions, oldest first."""
    try:
        versions = client.search_model_versions(f"name = '{model_name}'")
    except MlflowException:
        return []
    records = []
    with tempfile.TemporaryDirectory(prefix="dogbreeds-records-") as tmp, no_artifact_progress_bar():
        for version in versions:
            folder = version.tags.get(TAG_PREFIX + endpoint)
            if not folder:
                continue
            for artifact in client.list_artifacts(version.run_id, folder):
                if artifact.path.endswith(".json"):
                    local = client.download_artifacts(version.run_id, artifact.path, tmp)
                    records.append(json.loads(Path(local).read_text()))
    return sorted(records, key=lambda record: record["applied_at"])
