"""The job document: a job's config overrides and provenance as one JSON file in its own input channel.

Why not hyperparameters: the SDK's ``environment.py`` writes every hyperparameter into a shell file as
``export SM_HPS='...'``, which ``sm_train.sh`` sources, so a single quote anywhere in an override ends
the job before our code runs; SageMaker also caps each hyperparameter value at 2,500 characters. A file
has neither limit: overrides arrive byte for byte, whatever characters they hold and however many. The
launcher uploads it next to the source (``ModelTrainer`` uploads local channels), SageMaker puts it at
``/opt/ml/input/data/job/job.json`` and announces the folder as ``SM_CHANNEL_JOB``.

Provenance the job cannot see (its source is uploaded without ``.git``) travels the same way: the exact
command-line overrides here, the commit and dirty flag as environment variables (``lightning_app.tracking``
tags every run with them, in every process of the job).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from lightning_app.tracking import LAUNCH_COMMIT_ENV, LAUNCH_DIRTY_ENV, git_commit, git_dirty

JOB_CHANNEL = "job"  # SM_CHANNEL_JOB in the job
JOB_FILE = "job.json"
LAUNCH_OVERRIDES_TAG = "dogbreeds.launch_overrides"  # MLflow tag: the command line's overrides, as JSON


class JobDocumentError(RuntimeError):
    """The job's document is missing or unreadable: the job was not started by ``dogbreeds``."""


def job_document(verb: str, overrides: list[str], launch_overrides: list[str]) -> dict:
    """``overrides``: what the job composes its config from; ``launch_overrides``: what the user typed."""
    return {"verb": verb, "overrides": list(overrides), "launch_overrides": list(launch_overrides)}


def source_environment(project_root: Path) -> dict[str, str]:
    """The checkout's commit and dirty flag, for the job's environment (nothing when git cannot tell)."""
    found = {LAUNCH_COMMIT_ENV: git_commit(project_root), LAUNCH_DIRTY_ENV: git_dirty(project_root)}
    return {key: value for key, value in found.items() if value != "unknown"}


def write_document(document: dict, folder: Path) -> Path:
    """``folder`` becomes the job channel; returned for ``InputData(data_source=...)``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / JOB_FILE).write_text(json.dumps(document, ensure_ascii=False, indent=1), encoding="utf-8")
    return folder


def read_document(env: Mapping[str, str]) -> dict:
    channel = env.get(f"SM_CHANNEL_{JOB_CHANNEL.upper()}")
    if not channel:
        raise JobDocumentError(
            f"no SM_CHANNEL_{JOB_CHANNEL.upper()}: this entry point runs inside a SageMaker job started by "
            "`dogbreeds train|sweep backend=sagemaker`, which adds the job channel"
        )
    path = Path(channel) / JOB_FILE
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise JobDocumentError(f"job document {path} unreadable: {err}") from err
    if not isinstance(document, dict) or not isinstance(document.get("overrides"), list):
        raise JobDocumentError(f"job document {path} has no 'overrides' list")
    return document


def run_tags(document: dict) -> dict[str, str]:
    """MLflow tags that let a job's run be re-run like a local one: the command line it came from."""
    return {LAUNCH_OVERRIDES_TAG: json.dumps(document.get("launch_overrides", []), ensure_ascii=False)}
