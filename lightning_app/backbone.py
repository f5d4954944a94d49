"""Any torchvision classification backbone by name, with a new head for our classes.

Torchvision models name their classifier differently (``fc``, ``classifier[-1]``, ``heads.head``...),
but in every classification model the output layer is the last ``nn.Linear`` registered; we replace that
one, which keeps the code free of per-architecture tables.
"""

from __future__ import annotations

import socket
from contextlib import contextmanager
from pathlib import Path
from urllib.error import URLError

import torchvision
from torch import nn

from conf.errors import DogbreedsError
from conf.loader import ConfigError
from lightning_app import checkpoints


class WeightsUnavailableError(DogbreedsError):
    """Pretrained weights could not be fetched or read; the message says how to use a local file."""


# torch.hub downloads with urllib and no timeout: where a firewall drops packets instead of refusing them,
# an offline machine would hang forever. A per-read timeout still lets a slow but live download finish.
DOWNLOAD_TIMEOUT_S = 30.0


@contextmanager
def _socket_timeout(seconds: float):
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def _looks_like_path(weights: str) -> bool:
    return weights.endswith((".pth", ".pt", ".ckpt", ".bin")) or "/" in weights or Path(weights).exists()


def _load_local_weights(model: nn.Module, path: Path) -> None:
    if not path.is_file():
        raise WeightsUnavailableError(f"model.weights={path} is not a file")
    state = checkpoints.read(path)  # data, never code to unpickle
    if isinstance(state, dict) and "state_dict" in state:  # a Lightning checkpoint
        state = {k.removeprefix("model."): v for k, v in state["state_dict"].items()}
    # Tensors whose shape differs are the old head (ImageNet's 1000 classes, or another run's breeds):
    # it is replaced by a fresh head for our classes anyway, so only the matching backbone is loaded.
    expected = model.state_dict()
    matching = {k: v for k, v in state.items() if k in expected and v.shape == expected[k].shape}
    if not matching:
        raise WeightsUnavailableError(f"{path} holds no weights for this architecture (no matching keys)")
    model.load_state_dict(matching, strict=False)


def build_backbone(arch: str, weights: str | None) -> nn.Module:
    """The torchvision model ``arch`` with weights from a torchvision enum name, a local file, or none."""
    if arch not in torchvision.models.list_models(module=torchvision.models):
        raise ConfigError(
            f"model.arch={arch!r} is not a torchvision classification model; "
            "see torchvision.models.list_models(module=torchvision.models)"
        )
    if weights is None:
        return torchvision.models.get_model(arch, weights=None)
    if _looks_like_path(weights):
        model = torchvision.models.get_model(arch, weights=None)
        _load_local_weights(model, Path(weights).expanduser())
        return model
    enum_name = weights.split(".")[-1]
    try:
        weight_enum = torchvision.models.get_model_weights(arch)[enum_name]
    except KeyError:
        choices = [w.name for w in torchvision.models.get_model_weights(arch)] + ["DEFAULT"]
        raise ConfigError(f"model.weights={weights!r} is not one of {arch}'s weights: {choices}") from None
    try:
        with _socket_timeout(DOWNLOAD_TIMEOUT_S):
            return torchvision.models.get_model(arch, weights=weight_enum)
    except (URLError, OSError, RuntimeError) as err:
        raise WeightsUnavailableError(
            f"could not fetch {weight_enum} ({err}); this machine may be offline. Download "
            f"{weight_enum.url} elsewhere and set model.weights=/path/to/that/file.pth, or put it in "
            "$TORCH_HOME/hub/checkpoints/ where torchvision looks first"
        ) from err


def head_name(model: nn.Module) -> str:
    """Qualified name of the output layer: the last nn.Linear in registration order."""
    linear = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    if not linear:
        raise ConfigError(
            f"{type(model).__name__} has no nn.Linear output layer to replace; pick another model.arch"
        )
    return linear[-1]


def replace_head(model: nn.Module, num_classes: int, dropout: float) -> str:
    name = head_name(model)
    parent_name, _, attr = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    old = getattr(parent, attr)
    new = nn.Linear(old.in_features, num_classes)
    setattr(parent, attr, nn.Sequential(nn.Dropout(dropout), new) if dropout else new)
    return name


def backbone_stages(model: nn.Module, head: str) -> list[nn.Module]:
    """Ordered trainable blocks below the head, coarse enough for "unfreeze the last N stages".

    Top-level children, except that a ``features`` Sequential (EfficientNet, MobileNet, ConvNeXt, VGG...)
    is expanded into its own children, which are the real stages of those models.
    """
    head_root = head.split(".")[0]
    stages: list[nn.Module] = []
    for name, child in model.named_children():
        if name == head_root:
            continue
        if name == "features" and isinstance(child, nn.Sequential):
            stages.extend(c for c in child.children() if any(True for _ in c.parameters()))
        elif any(True for _ in child.parameters()):
            stages.append(child)
    return stages
