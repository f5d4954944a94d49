"""Reading our checkpoints as data: ``torch.load(weights_only=True)``, never arbitrary unpickling.

A checkpoint keeps the classifier's typed model config (dataclasses and enums from ``conf.schema``) as
its hyperparameters. ``weights_only`` loading rebuilds only the classes it was told are plain data, and
it is how Lightning reads checkpoints back (resume, testing the best checkpoint, ``load_from_checkpoint``)
as well as how packaging and fine-tuning from an earlier run read them. The allowance is process-wide:
torch's ``safe_globals`` context manager would withdraw it on exit, also for Lightning's later loads.
"""

from __future__ import annotations

from pathlib import Path

import torch

from conf.schema.training import MODEL_CONFIG_TYPES


def allow_model_config() -> None:
    """Let ``torch.load(weights_only=True)`` rebuild the model config (idempotent)."""
    torch.serialization.add_safe_globals(list(MODEL_CONFIG_TYPES))


def read(path: str | Path) -> dict:
    """A checkpoint (or plain state dict file) on the CPU: tensors, containers and our config types."""
    allow_model_config()
    return torch.load(path, map_location="cpu", weights_only=True)


def network_state_dict(checkpoint: dict) -> dict[str, torch.Tensor]:
    """The network's weights from a Lightning checkpoint, keyed as the serving core's ``build_network`` expects."""
    head = checkpoint["dogbreeds"]["head"]
    state = {}
    for key, tensor in checkpoint["state_dict"].items():
        if not key.startswith("model."):
            continue
        key = key.removeprefix("model.").replace("_orig_mod.", "")  # torch.compile wraps the net
        for param in ("weight", "bias"):  # Sequential(Dropout, Linear) head -> the Linear alone
            if key == f"{head}.1.{param}":
                key = f"{head}.{param}"
        state[key] = tensor
    return state
