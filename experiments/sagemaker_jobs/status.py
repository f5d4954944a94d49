"""``dogbreeds jobs``: this project's SageMaker training jobs, their status, cost so far and MLflow run.

Cost: for a finished job SageMaker reports ``BillableTimeInSeconds`` per instance (already net of spot
savings), billed at the on-demand price; for a running job it is the time since training started, at
the spot or on-demand price of ``backend.prices``. Estimates, not an invoice: prices change by region
and day, so the table lives in config. A failed job's ``FailureReason`` (the entry point's redacted
exception, see ``failure.py``) is shown under the table.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from experiments.sagemaker_jobs.submit import JOB_TAG, STUDY_TAG, JobConfigError

log = logging.getLogger(__name__)


@dataclass
class JobRow:
    name: str
    verb: str
    status: str
    instances: str
    spot: bool
    hours: float
    cost_usd: float | None
    mlflow_run: str
    failure: str = ""


def job_hours(job: dict, now: datetime) -> float:
    """Instance-hours billed so far (finished: billable time; running: since training started)."""
    count = job["ResourceConfig"]["InstanceCount"]
    if job.get("BillableTimeInSeconds") is not None:
        return job["BillableTimeInSeconds"] * count / 3600
    start = job.get("TrainingStartTime")
    if start is None:  # still waiting for instances (or spot capacity): nothing billed yet
        return 0.0
    end = job.get("TrainingEndTime") or now
    return max((end - start).total_seconds(), 0.0) * count / 3600


def job_cost(job: dict, prices: dict, now: datetime) -> float | None:
    """USD so far, or None when ``backend.prices`` has no entry for the instance type."""
    price = prices.get(job["ResourceConfig"]["InstanceType"])
    if price is None:
        return None
    running_on_spot = job.get("EnableManagedSpotTraining") and job.get("BillableTimeInSeconds") is None
    rate = price["spot"] if running_on_spot else price["on_demand"]
    return job_hours(job, now) * rate


def _study(job: dict) -> str | None:
    """Sweep jobs carry their study as a tag (their overrides are in the job document, not in the job)."""
    found = [t["Value"] for t in job.get("Tags", []) if t["Key"] == STUDY_TAG]
    return found[0] if found else None


def describe_jobs(sagemaker_client, prefix: str, limit: int = 50) -> list[dict]:
    """Newest first; ``prefix`` is ``backend.job_prefix`` (every job this project launches starts with it)."""
    from botocore.exceptions import NoCredentialsError, NoRegionError

    paginator = sagemaker_client.get_paginator("list_training_jobs")
    names = []
    pages = paginator.paginate(NameContains=prefix, SortBy="CreationTime", SortOrder="Descending")
    try:
        for page in pages:
            names += [
                s["TrainingJobName"]
                for s in page["TrainingJobSummaries"]
                if s["TrainingJobName"].startswith(prefix)
            ]
            if len(names) >= limit:
                break
    except (NoCredentialsError, NoRegionError) as err:
        raise JobConfigError(
            f"{err}: configure AWS credentials (environment, profile or instance role) and a region "
            "(backend.region or AWS_DEFAULT_REGION)"
        ) from err
    jobs = [sagemaker_client.describe_training_job(TrainingJobName=name) for name in names[:limit]]
    for job in jobs:  # describe leaves tags out; only sweep jobs need theirs (the study)
        if job.get("HyperParameters", {}).get("verb") == "sweep":
            job["Tags"] = sagemaker_client.list_tags(ResourceArn=job["TrainingJobArn"])["Tags"]
    return jobs


def mlflow_runs(mlflow_client, experiment_name: str, jobs: list[dict]) -> dict[str, str]:
    """Job name -> MLflow run id: train runs carry the job's name as a tag; sweep jobs map to their study's
    parent run. Tracking being unreachable from here costs the column, not the listing."""
    from experiments.sweep_tracking import find_parent_run

    try:
        experiment = mlflow_client.get_experiment_by_name(experiment_name)
        if experiment is None:
            return {}
        runs = mlflow_client.search_runs(
            [experiment.experiment_id], f"tags.`{JOB_TAG}` LIKE '%'", max_results=1000
        )
        found = {run.data.tags[JOB_TAG]: run.info.run_id for run in runs}
        for job in jobs:
            study = _study(job)
            if study and job["TrainingJobName"] not in found:
                found[job["TrainingJobName"]] = find_parent_run(mlflow_client, experiment_name, study) or ""
        return found
    except Exception as err:  # network, auth, server: the job listing is still useful
        log.warning("MLflow runs unavailable (%s)", err)
        return {}


def job_rows(
    jobs: list[dict], prices: dict, runs: dict[str, str], now: datetime | None = None
) -> list[JobRow]:
    now = now or datetime.now(UTC)
    rows = []
    for job in jobs:
        status = job["TrainingJobStatus"]
        if job.get("SecondaryStatus") and job["SecondaryStatus"] != status:
            status = f"{status} ({job['SecondaryStatus']})"
        resources = job["ResourceConfig"]
        rows.append(
            JobRow(
                name=job["TrainingJobName"],
                verb=job.get("HyperParameters", {}).get("verb", "?"),
                status=status,
                instances=f"{resources['InstanceCount']} x {resources['InstanceType']}",
                spot=bool(job.get("EnableManagedSpotTraining")),
                hours=job_hours(job, now),
                cost_usd=job_cost(job, prices, now),
                mlflow_run=runs.get(job["TrainingJobName"], ""),
                failure=job.get("FailureReason", ""),
            )
        )
    return rows
