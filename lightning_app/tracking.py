"""MLflow conventions shared by training, sweeps and promotion.

Where runs go (tracking URI resolution), what every run records (flattened config, provenance tags),
and how the trained model is logged so ``mlflow.pytorch.load_model`` gives a working classifier.
"""

from __future__ import annotations

import os
import socket
import subprocess
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

DEFAULT_DB = "mlflow.db"
# Set by the SageMaker job launcher: the job's code is uploaded without .git, so the commit (and whether
# the upload held uncommitted changes) is recorded where it was still known, at submit time.
LAUNCH_COMMIT_ENV = "DOGBREEDS_GIT_COMMIT"
LAUNCH_DIRTY_ENV = "DOGBREEDS_GIT_DIRTY"
MODEL_ARTIFACT = "model"
CHECKPOINT_ARTIFACT = "checkpoints"
# The resolved config, what `dogbreeds rerun` starts from (params are flattened strings, lossy).
CONFIG_ARTIFACT = "config.yaml"
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
MLFLOW_PARENT_RUN_ID = "mlflow.parentRunId"  # MLflow's own tag: a nested run (our sweep trials)
MODEL_TRAINING = "custom_model_development"
PROGRESS_BAR_ENV = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"


def artifact_location(tracking_uri: str) -> str | None:
    """Where a new experiment of this store keeps its artifacts: beside a SQLite store's file.

    MLflow's default is ``./mlruns`` of whatever folder the process happens to run in, so the artifacts of
    one store end up scattered (and a test run, or a run started from the checkout, fills the checkout).
    A server decides for itself: None.
    """
    if not tracking_uri.startswith("sqlite:///"):
        return None
    database = Path(tracking_uri.removeprefix("sqlite:///"))
    return (database.parent / "mlruns").resolve().as_uri()


def ensure_experiment(client, name: str) -> str:
    """The experiment's id, creating it with our artifact location and marked as model training.

    MLflow 3's UI opens an experiment in GenAI mode (traces, evaluations) unless the experiment says
    otherwise; ``mlflow.experimentKind`` is the tag it reads (values from MLflow's UI code). Experiments
    made before this tag existed get it too.
    """
    from mlflow.exceptions import MlflowException

    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        try:
            return client.create_experiment(
                name, artifact_location(client.tracking_uri), tags={EXPERIMENT_KIND_TAG: MODEL_TRAINING}
            )
        except MlflowException:  # another process created it in between (sweep workers, DDP ranks)
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                raise
    if experiment.tags.get(EXPERIMENT_KIND_TAG) != MODEL_TRAINING:
        client.set_experiment_tag(experiment.experiment_id, EXPERIMENT_KIND_TAG, MODEL_TRAINING)
    return experiment.experiment_id


def default_run_name(model_cfg) -> str:
    """``resnet18-lr0.001-1125-043512-9f3c``: what was trained, when, and a random suffix.

    MLflow's own names come from Python's ``random``, which the training seed has just seeded, so every run
    of the same seed would get the same name. The suffix comes from ``os.urandom``, which no seed touches.
    """
    stamp = datetime.now().strftime("%m%d-%H%M%S")
    return f"{model_cfg.arch}-lr{model_cfg.lr:g}-{stamp}-{os.urandom(2).hex()}"


def resolve_tracking_uri(configured: str | None) -> str:
    """Config wins, then $MLFLOW_TRACKING_URI, then a SQLite file in the working directory.

    Every MLflow client of the project gets its URI here, so this is also where the sagemaker-mlflow
    plugin is set up for it (see ``scope_sagemaker_mlflow``).
    """
    if configured:
        uri = configured
    elif os.environ.get("MLFLOW_TRACKING_URI"):
        uri = os.environ["MLFLOW_TRACKING_URI"]
    else:
        uri = f"sqlite:///{Path.cwd() / DEFAULT_DB}"
    scope_sagemaker_mlflow(uri)
    return uri


def is_sagemaker_arn(uri: str) -> bool:
    return uri.startswith("arn:aws") and ":sagemaker:" in uri


def scope_sagemaker_mlflow(uri: str) -> None:
    """Make sagemaker-mlflow's request-header plugin serve ARN tracking URIs only, and serve them right.

    The plugin (installed with the SageMaker SDK) declares itself active for every MLflow request and
    parses ``mlflow.get_tracking_uri()`` as an ARN, so against any other server MLflow logs
    "Encountered unexpected error during resolving request headers: list index out of range" on every
    request, and with an ARN given only to an ``MlflowClient`` it finds no ARN either: the routing
    header is missing. So: active only while the process-wide URI is an ARN, and an ARN we resolve
    becomes the process-wide URI.
    """
    import mlflow
    from mlflow.tracking.request_header.registry import _request_header_provider_registry

    if is_sagemaker_arn(uri):
        mlflow.set_tracking_uri(uri)
    for provider in _request_header_provider_registry:
        if type(provider).__module__.startswith("sagemaker_mlflow"):
            provider.in_context = lambda: is_sagemaker_arn(str(mlflow.get_tracking_uri()))


def flatten(config: dict, prefix: str = "") -> dict[str, str]:
    """Nested config -> ``{"model.lr": "0.001", ...}``: one MLflow param per leaf, comparable in the UI."""
    flat: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = str(value)
    return flat


def git_commit(cwd: Path | None = None) -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5, check=True
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def device_description() -> str:
    import torch

    if torch.cuda.is_available():
        return f"cuda:{torch.cuda.get_device_name(0)} x{torch.cuda.device_count()}"
    return f"cpu x{os.cpu_count()}"


def git_dirty(cwd: Path | None = None) -> str:
    """ "true" when the checkout has uncommitted or untracked files (code the commit does not hold)."""
    try:
        out = subprocess.run(
            ["git", "status", "--porcelain"], cwd=cwd, capture_output=True, text=True, timeout=10, check=True
        )
        return "true" if out.stdout.strip() else "false"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def provenance_tags() -> dict[str, str]:
    """The code's commit and dirty flag (from the launcher when the code was shipped without .git)."""
    here = Path(__file__).resolve().parent
    return {
        "git_commit": os.environ.get(LAUNCH_COMMIT_ENV) or git_commit(here),
        "git_dirty": os.environ.get(LAUNCH_DIRTY_ENV) or git_dirty(here),
        "host": socket.gethostname(),
        "device": device_description(),
    }


@contextmanager
def system_metrics(run_id: str, tracking_uri: str, enabled: bool, interval: float = 10):
    """CPU, memory, disk, network (and GPU) every ``interval`` s as ``system/*`` metrics while the block runs.

    ``enabled``: rank 0 of a standalone run; sweep trials skip it (a sampling thread per short trial, and
    a study's worth of ``system/*`` metrics nobody compares).
    """
    if not enabled:
        yield
        return
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    monitor = SystemMetricsMonitor(run_id, sampling_interval=interval, tracking_uri=tracking_uri)
    monitor.start()
    try:
        yield
    finally:
        monitor.finish()


def log_dataset_input(client, run_id: str, root: str, fingerprint: str) -> None:
    """The data as an MLflow dataset input (source ``root``, digest = our fingerprint): the UI's Datasets
    column then shows which runs trained on the same data."""
    import warnings

    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.entities import DatasetInput, InputTag

    with warnings.catch_warnings():  # a local path "can be interpreted in multiple ways": all the same one
        warnings.simplefilter("ignore", UserWarning)
        source = resolve_dataset_source(root)
    dataset = MetaDataset(source, name=Path(root.rstrip("/")).name or root, digest=fingerprint[:36])
    context = InputTag("mlflow.data.context", "training")
    client.log_inputs(run_id, datasets=[DatasetInput(dataset._to_mlflow_entity(), tags=[context])])


def local_artifact(client, run_id: str, path: str) -> Path | None:
    """Where the run's artifact ``path`` lies when its artifact store is a folder on this machine (a
    SQLite store's ``mlruns/``), else None (a server, S3)."""
    from urllib.parse import urlparse

    from mlflow.utils.file_utils import local_file_uri_to_path

    root = client.get_run(run_id).info.artifact_uri
    if urlparse(root).scheme not in ("", "file"):
        return None
    found = Path(local_file_uri_to_path(root)) / path
    return found if found.is_file() else None


@contextmanager
def no_artifact_progress_bar():
    """MLflow draws a "Downloading artifacts" tqdm bar for every artifact download (the model it loads
    back to validate an input example, the checkpoint a package is built from): on a console it breaks
    the one log format, in a CI or SageMaker log it is dozens of carriage-return lines. MLflow reads the
    switch on every download, so it is off for the block only."""
    previous = os.environ.get(PROGRESS_BAR_ENV)
    os.environ[PROGRESS_BAR_ENV] = "false"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(PROGRESS_BAR_ENV, None)
        else:
            os.environ[PROGRESS_BAR_ENV] = previous


def log_image_model(client, run_id: str, checkpoint: Path, metadata: dict) -> None:
    """Log the image-serving pyfunc (``image_pyfunc``) with ``checkpoint`` as its artifact, a signature
    (image bytes in; top-k labels and probabilities out; ``top_k`` param) and a JPEG input example."""
    import mlflow
    import pandas as pd
    from mlflow.models import Model, ModelSignature
    from mlflow.types import ColSpec, DataType, ParamSchema, ParamSpec, Schema
    from mlflow.types.schema import Array

    from lightning_app import image_pyfunc

    signature = ModelSignature(
        inputs=Schema([ColSpec(DataType.binary, image_pyfunc.IMAGE_COLUMN)]),
        outputs=Schema(
            [ColSpec(Array(DataType.string), "labels"), ColSpec(Array(DataType.double), "probabilities")]
        ),
        params=ParamSchema([ParamSpec("top_k", DataType.long, image_pyfunc.DEFAULT_TOP_K)]),
    )
    previous_uri = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(client.tracking_uri)
    # Logging a model reads an artifact back (a download).
    try:
        with (
            no_artifact_progress_bar(),
            mlflow.start_run(run_id=run_id, nested=mlflow.active_run() is not None),
        ):
            # mlflow.pyfunc.log_model, without its serving check (see ``_PYFUNC_FLAVOR``).
            Model.log(
                artifact_path=None,  # deprecated for ``name``, but still a required argument
                name=MODEL_ARTIFACT,
                flavor=_PYFUNC_FLAVOR,
                flavor_name="pyfunc.CustomPythonModel",
                validate_serving_input=False,
                python_model=image_pyfunc.ImageClassifierModel(),
                artifacts={image_pyfunc.CHECKPOINT_KEY: str(checkpoint)},
                signature=signature,
                input_example=pd.DataFrame({image_pyfunc.IMAGE_COLUMN: [image_pyfunc.example_jpeg()]}),
                metadata=metadata,
                pip_requirements=_pinned_requirements(),
            )
    finally:
        mlflow.set_tracking_uri(previous_uri)


def _save_pyfunc(validate_serving_input: bool = True, **kwargs) -> None:
    import mlflow.pyfunc

    mlflow.pyfunc.save_model(**kwargs)


# ``mlflow.pyfunc`` as ``Model.log``'s flavor, taking ``Model.log``'s ``validate_serving_input`` switch.
# ``mlflow.pyfunc.log_model`` checks the input example by loading the logged model back and predicting
# (a second model load on every run, about a second here) and only warns when that fails; our tests load
# and query the logged model instead. ``Model.log`` skips that check on ``validate_serving_input=False``
# (MLflow's transformers flavor passes it) but hands its keyword arguments on to the flavor's
# ``save_model``, which for pyfunc refuses unknown ones: hence this wrapper. ``save_model`` still checks
# the example against the signature, and the example stays in the logged model.
_PYFUNC_FLAVOR = SimpleNamespace(save_model=_save_pyfunc)


def _pinned_requirements() -> list[str]:
    """What the pyfunc imports, at the versions here (MLflow's inference of them is slow and guesses)."""
    from importlib.metadata import version

    return [
        f"{name}=={version(name).split('+')[0]}" for name in ("torch", "torchvision", "lightning", "pillow")
    ]
