"""``train``/``sweep`` with ``backend=sagemaker``: SageMaker training jobs via the SDK v3 ``ModelTrainer``.

Each job uploads this project's source, installs ``experiments/sagemaker_jobs/requirements.txt`` on top of the
AWS PyTorch training image, reads the data from an ``s3://`` channel and runs
``experiments/sagemaker_jobs/entry.py``, which calls the same ``train(cfg)`` / sweep worker as a local run.

- ``train``: one job of ``backend.instance_count`` instances; torchrun (the SDK's ``Torchrun``) starts
  one process per GPU on each, and Lightning DDP spans all of them.
- ``sweep`` with ``sweep.workers=N``: N single-instance jobs, each one ``dogbreeds sweep`` worker on the
  same study (shared PostgreSQL storage) and the same MLflow server.
- ``backend.spot``: managed spot training; checkpoints sync between /opt/ml/checkpoints and S3, and an
  interrupted ``train`` job resumes from ``last.ckpt`` in the same MLflow run.

Job definitions are plain values (``JobSpec``) built from the config, printed by ``--dry-run`` and
turned into ``ModelTrainer`` objects only when launching. Credentials never enter them: URIs with a
password are refused, and secrets reach the job through ``backend.secret_id`` (AWS Secrets Manager).
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from omegaconf import DictConfig

from conf.errors import DogbreedsError
from experiments.sagemaker_jobs import request_limits
from experiments.sagemaker_jobs.job_document import job_document, source_environment

PROJECT_ROOT = Path(__file__).resolve().parents[2]
ENTRY_SCRIPT = "experiments/sagemaker_jobs/entry.py"
REQUIREMENTS = "experiments/sagemaker_jobs/requirements.txt"
DATA_CHANNEL = "training"  # SM_CHANNEL_TRAINING in the job
CHECKPOINT_LOCAL_PATH = "/opt/ml/checkpoints"
SECRET_ENV = "DOGBREEDS_SECRET_ID"
CHECKPOINT_ENV = "DOGBREEDS_CHECKPOINT_DIR"
JOB_TAG = "dogbreeds.sagemaker_job"  # MLflow tag naming the job a run came from
STUDY_TAG = "dogbreeds:study"  # SageMaker tag of sweep jobs: the study they work on
# Not uploaded with the source: environments, caches, local results.
IGNORE_PATTERNS = [
    ".venv", ".git", "__pycache__", ".pytest_cache", ".ruff_cache", ".pip-empty",
    "outputs", "mlruns", "mlflow.db", "optuna.db", "sample_data", "*.ckpt", "*.tar.gz",
]  # fmt: skip
# Overrides the launcher decides per job; the user's own values are replaced, not duplicated.
LAUNCHER_KEYS = (
    "backend",
    "sweep.workers",
    "sweep.worker_index",
    "sweep.study_name",
    "resume",
    "checkpoint_dir",
)


class JobConfigError(DogbreedsError):
    """The config cannot become a SageMaker job; the message says which key to fix and how."""


@dataclass
class JobSpec:
    """One training job, as plain values (what ``--dry-run`` prints)."""

    base_job_name: str
    verb: str
    image_uri: str
    instance_type: str
    instance_count: int
    processes_per_instance: int | None
    distributed: bool
    volume_size_gb: int
    spot: bool
    max_runtime_s: int
    max_wait_s: int | None
    data_s3_uri: str
    checkpoint_s3_uri: str | None
    output_s3_uri: str | None
    role_arn: str | None
    hyperparameters: dict[str, str] = field(default_factory=dict)  # fixed words only: they go through a shell
    document: dict = field(default_factory=dict)  # the job document (overrides, provenance)
    environment: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


def override_key(override: str) -> str:
    return override.lstrip("+~").split("=", 1)[0]


def _refuse_credentials(name: str, uri: str | None) -> None:
    if uri and urlsplit(uri).password:
        raise JobConfigError(
            f"{name} contains a password; job definitions are visible to anyone who can describe the job. "
            f"Drop it from the URI and put it in the Secrets Manager secret named by backend.secret_id "
            "(e.g. PGPASSWORD for PostgreSQL, MLFLOW_TRACKING_PASSWORD or MLFLOW_TRACKING_TOKEN for MLflow)"
        )


def _check_tracking(uri: str | None) -> None:
    _refuse_credentials("tracking_uri", uri)
    if not uri or not re.match(r"(https?://|arn:aws[\w-]*:sagemaker:)", uri):
        raise JobConfigError(
            f"tracking_uri={uri}: a SageMaker job needs an MLflow server it can reach: "
            "tracking_uri=https://... or a SageMaker managed MLflow tracking server ARN"
        )


def image_uri(backend: DictConfig) -> str:
    """``backend.image_uri``, else the AWS PyTorch training image for version, region and instance type."""
    if backend.image_uri:
        return backend.image_uri
    import boto3
    from sagemaker.core import image_uris

    region = backend.region or boto3.session.Session().region_name
    if not region:
        raise JobConfigError("no AWS region: set backend.region=us-east-1 (or AWS_DEFAULT_REGION)")
    return image_uris.retrieve(
        framework="pytorch",
        region=region,
        version=backend.framework_version,
        py_version=backend.py_version,
        instance_type=backend.instance_type,
        image_scope="training",
    )


def job_overrides(overrides: list[str], extra: list[str]) -> list[str]:
    """The user's overrides (minus launcher keys) plus per-job ones: what the job composes its config from."""
    kept = [o for o in overrides if not override_key(o).startswith(LAUNCHER_KEYS)]
    return [*kept, *extra]


def _base_spec(cfg: DictConfig, verb: str, overrides: list[str], extra: list[str]) -> JobSpec:
    backend = cfg.backend
    if not str(cfg.data.root).startswith("s3://"):
        raise JobConfigError(
            f"data.root={cfg.data.root} is local; SageMaker jobs read data from S3: upload it "
            "(aws s3 sync DIR s3://BUCKET/dogImages) and pass data.root=s3://BUCKET/dogImages"
        )
    _check_tracking(cfg.tracking_uri)
    if backend.instance_count < 1:
        raise JobConfigError(f"backend.instance_count={backend.instance_count}: must be at least 1")
    request_limits.check_job_prefix(backend.job_prefix)
    environment = {SECRET_ENV: backend.secret_id} if backend.secret_id else {}
    environment.update(source_environment(PROJECT_ROOT))
    return JobSpec(
        base_job_name=f"{backend.job_prefix}-{verb}",
        verb=verb,
        image_uri=image_uri(backend),
        instance_type=backend.instance_type,
        instance_count=backend.instance_count,
        processes_per_instance=backend.processes_per_instance,
        distributed=False,
        volume_size_gb=backend.volume_size_gb,
        spot=backend.spot,
        max_runtime_s=backend.max_runtime_s,
        max_wait_s=backend.max_wait_s if backend.spot else None,
        data_s3_uri=cfg.data.root,
        checkpoint_s3_uri=None,
        output_s3_uri=backend.output_s3_uri,
        role_arn=backend.role_arn,
        hyperparameters={"verb": verb},
        document=job_document(verb, job_overrides(overrides, extra), overrides),
        environment=environment,
        tags={**backend.tags, "dogbreeds:verb": verb, "dogbreeds:experiment": cfg.experiment_name},
    )


def train_job(cfg: DictConfig, overrides: list[str]) -> JobSpec:
    """One (multi-instance, multi-GPU) job; with spot, it resumes from its synced checkpoints."""
    spec = _base_spec(cfg, "train", overrides, ["resume=true", f"checkpoint_dir={CHECKPOINT_LOCAL_PATH}"])
    spec.distributed = True
    spec.checkpoint_s3_uri = cfg.backend.checkpoint_s3_uri
    spec.environment[CHECKPOINT_ENV] = CHECKPOINT_LOCAL_PATH
    return spec


def sweep_jobs(cfg: DictConfig, overrides: list[str]) -> list[JobSpec]:
    """``sweep.workers`` single-instance jobs, each one worker of the same study (sweeps refuse torchrun)."""
    from experiments.study_setup import study_name

    storage = cfg.sweep.storage
    _refuse_credentials("sweep.storage", storage)
    if not storage or not storage.startswith("postgresql"):
        raise JobConfigError(
            f"sweep.storage={storage}: workers on several machines need a shared database: "
            "sweep.storage=postgresql://USER@HOST:5432/DB (password in the backend.secret_id secret)"
        )
    if cfg.backend.instance_count != 1:
        raise JobConfigError(
            "sweep workers run one per job: use sweep.workers=N with backend.instance_count=1"
        )
    name = study_name(cfg)
    specs = []
    for index in range(cfg.sweep.workers):
        extra = ["sweep.workers=1", f"sweep.worker_index={index}", f"sweep.study_name={name}"]
        spec = _base_spec(cfg, "sweep", overrides, extra)
        spec.tags[STUDY_TAG] = name
        specs.append(spec)
    return specs


def check_limits(spec: JobSpec) -> None:
    """Refuse what SageMaker would refuse, before anything is uploaded."""
    request_limits.check_tags(spec.tags)
    request_limits.check_environment(spec.environment)


def submit(cfg: DictConfig, verb: str, overrides: list[str], dry_run: bool = False) -> list[str]:
    """What ``dogbreeds train|sweep backend=sagemaker [--dry-run]`` prints: job definitions or job names."""
    from botocore.exceptions import NoCredentialsError, NoRegionError

    specs = [train_job(cfg, overrides)] if verb == "train" else sweep_jobs(cfg, overrides)
    if dry_run:
        for spec in specs:
            check_limits(spec)
        return [json.dumps(spec.as_dict(), indent=2) for spec in specs]
    from experiments.sagemaker_jobs.launcher import launch, sagemaker_session

    try:
        names = launch(specs, sagemaker_session(cfg.backend))
    except (NoCredentialsError, NoRegionError) as err:
        raise JobConfigError(
            f"{err}: configure AWS credentials (environment, profile or instance role) and a region "
            "(backend.region or AWS_DEFAULT_REGION)"
        ) from err
    return [f"started {name} (follow with: dogbreeds jobs)" for name in names]
