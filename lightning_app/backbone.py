"""Any torchvision classification backbone by name, with a new head for our classes.

Torchvision models name their classifier differently (``fc``, ``classifier[-1]``, ``heads.head``...),
but in every classification model the output layer is the last ``nn.Linear`` registered; we replace that
one, which keeps the code free of per-architecture tables.
"""

from __future__ import annotations

import hashlib
import logging
import urllib.request
import uuid
from pathlib import Path
from urllib.error import URLError
from urllib.parse import urlparse

import torch
import torchvision
from torch import nn

from conf.errors import DogbreedsError
from conf.loader import ConfigError
from lightning_app import checkpoints

log = logging.getLogger(__name__)


class WeightsUnavailableError(DogbreedsError):
    """Pretrained weights could not be fetched or read; the message says how to use a local file."""


# torch.hub downloads with urllib and no timeout: where a firewall drops packets instead of refusing them,
# an offline machine would hang forever. A per-read timeout still lets a slow but live download finish.
DOWNLOAD_TIMEOUT_S = 30.0


def _download_to_hub_cache(url: str) -> None:
    """Put ``url`` where torch.hub looks first, with ``DOWNLOAD_TIMEOUT_S`` on this download's socket only.

    ``socket.setdefaulttimeout`` would bound torch.hub's own download too, but for every socket any
    thread of the process opens meanwhile (a DataLoader, an MLflow client). The file is written under a
    temporary name and renamed when whole and matching the sha256 prefix in its name (what torch.hub's
    ``check_hash`` checks), so an interrupted download never looks like cached weights.
    """
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    target = folder / Path(urlparse(url).path).name
    if target.exists():
        return
    folder.mkdir(parents=True, exist_ok=True)
    log.info("downloading %s to %s", url, target)
    partial = target.with_name(f"{target.name}.{uuid.uuid4().hex}.partial")
    digest = hashlib.sha256()
    request = urllib.request.Request(url, headers={"User-Agent": "torch.hub"})
    opener = urllib.request.build_opener()  # proxies as the environment says now, not at the first urlopen
    try:
        with (
            opener.open(request, timeout=DOWNLOAD_TIMEOUT_S) as response,
            open(partial, "wb") as out,
        ):
            while block := response.read(1 << 20):
                digest.update(block)
                out.write(block)
        expected = torch.hub.HASH_REGEX.search(target.name)
        if expected and not digest.hexdigest().startswith(expected.group(1)):
            raise RuntimeError(f"{url} arrived with sha256 {digest.hexdigest()}, not {expected.group(1)}...")
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)


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
        _download_to_hub_cache(weight_enum.url)
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
