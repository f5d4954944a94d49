"""MLflow conventions shared by training, sweeps and promotion.

Where runs go (tracking URI resolution), what every run records (flattened config, provenance tags),
and how the trained model is logged so ``mlflow.pytorch.load_model`` gives a working classifier.
"""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

DEFAULT_DB = "mlflow.db"
MODEL_ARTIFACT = "model"
CHECKPOINT_ARTIFACT = "checkpoints"


def resolve_tracking_uri(configured: str | None) -> str:
    """Config wins, then $MLFLOW_TRACKING_URI, then a SQLite file in the working directory."""
    if configured:
        return configured
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    return f"sqlite:///{Path.cwd() / DEFAULT_DB}"


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


def provenance_tags() -> dict[str, str]:
    return {
        "git_commit": git_commit(Path(__file__).resolve().parent),
        "host": socket.gethostname(),
        "device": device_description(),
    }


def log_pytorch_model(client, run_id: str, net, example_input, metadata: dict) -> None:
    """Log ``net`` with signature and input example, pinned requirements (no slow inference of them)."""
    import mlflow
    import torch
    import torchvision
    from mlflow.models import infer_signature

    net = net.eval().cpu()
    with torch.inference_mode():
        output = net(example_input).numpy()
    signature = infer_signature(example_input.numpy(), output)
    previous_uri = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(client.tracking_uri)
    try:
        with mlflow.start_run(run_id=run_id, nested=mlflow.active_run() is not None):
            mlflow.pytorch.log_model(
                net,
                name=MODEL_ARTIFACT,
                signature=signature,
                input_example=example_input.numpy(),
                metadata=metadata,
                pip_requirements=[
                    f"torch=={torch.__version__.split('+')[0]}",
                    f"torchvision=={torchvision.__version__.split('+')[0]}",
                ],
            )
    finally:
        mlflow.set_tracking_uri(previous_uri)
