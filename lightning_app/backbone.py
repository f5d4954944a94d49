"""A classification backbone by name, from torchvision or timm (``timm/<name>``), with a new head.

timm models replace their head through their own API (``reset_classifier``; ``pretrained_cfg`` names it).
Torchvision models name their classifier differently (``fc``, ``classifier[-1]``, ``heads.head``...),
but in every classification model the output layer is the last ``nn.Linear`` registered; we replace that
one, which keeps the code free of per-architecture tables. Weights: ``lightning_app/weights.py``.
"""

from __future__ import annotations

import difflib
from urllib.error import URLError

import torch
import torchvision
from torch import nn

from conf.loader import ConfigError
from lightning_app import efficientnet_keys
from lightning_app.serving.inference import TIMM_PREFIX
from lightning_app.weights import (
    PACKAGE_PREFIX,
    WeightsUnavailableError,
    download_to_hub_cache,
    is_file_source,
    local_file,
    read_state_dict,
    torchvision_enum,
)

STAGE_CONTAINERS = ("features", "blocks", "stages")


def timm_name(arch: str) -> str | None:
    """``timm/<name>`` -> ``<name>``; None for a torchvision name."""
    return arch.removeprefix(TIMM_PREFIX) if arch.startswith(TIMM_PREFIX) else None


def check_arch(arch: str) -> None:
    """A ConfigError naming the catalogue (and the nearest names) for a model neither library has."""
    name = timm_name(arch)
    if name is not None:
        import timm  # only for timm architectures; torchvision-only runs never pay its import

        known = timm.list_models()
        catalogue = "timm.list_models()"
    else:
        known = torchvision.models.list_models(module=torchvision.models)
        catalogue = "torchvision.models.list_models(module=torchvision.models); timm models are timm/<name>"
    if (name or arch) in known:
        return
    near = difflib.get_close_matches(name or arch, known, n=3)
    hint = f"did you mean {', '.join((TIMM_PREFIX if name else '') + n for n in near)}? " if near else ""
    library = "timm" if name is not None else "torchvision"
    raise ConfigError(f"model.arch={arch!r} is not a {library} classification model; {hint}see {catalogue}")


def load_weights(model: nn.Module, state: dict[str, torch.Tensor], source: str, strict: bool) -> None:
    """Load ``state`` into ``model``; tensors whose shape differs are an old head (ImageNet's 1000
    classes, another run's breeds), replaced by a fresh head for our classes anyway. ``strict``: every
    tensor of the network must come from ``state`` (pretrained weights made for exactly this network)."""
    if efficientnet_keys.looks_like_efficientnet_pytorch(state):
        state = efficientnet_keys.to_timm(state, model)
    expected = model.state_dict()
    matching = {k: v for k, v in state.items() if k in expected and v.shape == expected[k].shape}
    if strict:
        missing = sorted(set(expected) - set(matching))
        if missing:
            raise WeightsUnavailableError(
                f"{source} does not fit this architecture: {len(missing)} tensors missing or of another "
                f"shape ({', '.join(missing[:3])}...)"
            )
    if not matching:
        raise WeightsUnavailableError(f"{source} holds no weights for this architecture (no matching keys)")
    model.load_state_dict(matching, strict=strict)


def _timm_backbone(name: str, weights: str | None) -> nn.Module:
    import timm  # only for timm architectures

    if weights is None or weights.startswith(PACKAGE_PREFIX) or is_file_source(weights):
        model = timm.create_model(name, pretrained=False)
        if weights is not None:
            path = local_file(weights)
            load_weights(model, read_state_dict(path), weights, strict=weights.startswith(PACKAGE_PREFIX))
        return model
    tagged = name if weights == "DEFAULT" else f"{name}.{weights}"
    try:
        return timm.create_model(tagged, pretrained=True)
    except RuntimeError as err:  # an unknown tag: timm names the model it has no weights for
        raise ConfigError(f"model.weights={weights!r}: timm has no pretrained {tagged} ({err})") from None
    except OSError as err:  # the hub is out of reach (huggingface_hub's errors are OSErrors)
        raise WeightsUnavailableError(
            f"could not fetch timm's pretrained {tagged} ({err}); this machine may be offline. Set "
            "model.weights=/path/to/weights.safetensors (or a package:<distribution> that ships them)"
        ) from err


def _torchvision_backbone(arch: str, weights: str | None) -> nn.Module:
    if weights is None:
        return torchvision.models.get_model(arch, weights=None)
    if weights.startswith(PACKAGE_PREFIX) or is_file_source(weights):
        model = torchvision.models.get_model(arch, weights=None)
        path = local_file(weights)
        load_weights(model, read_state_dict(path), str(path), strict=weights.startswith(PACKAGE_PREFIX))
        return model
    weight_enum = torchvision_enum(arch, weights)
    try:
        download_to_hub_cache(weight_enum.url)
        return torchvision.models.get_model(arch, weights=weight_enum)
    except (URLError, OSError, RuntimeError) as err:
        raise WeightsUnavailableError(
            f"could not fetch {weight_enum} ({err}); this machine may be offline. Download "
            f"{weight_enum.url} elsewhere and set model.weights=/path/to/that/file.pth, or put it in "
            "$TORCH_HOME/hub/checkpoints/ where torchvision looks first"
        ) from err


def build_backbone(arch: str, weights: str | None) -> nn.Module:
    """The torchvision or timm (``timm/<name>``) model ``arch``, with its starting weights (``weights.py``)."""
    check_arch(arch)
    name = timm_name(arch)
    return _timm_backbone(name, weights) if name is not None else _torchvision_backbone(arch, weights)


def is_timm(model: nn.Module) -> bool:
    return hasattr(model, "reset_classifier") and isinstance(getattr(model, "pretrained_cfg", None), dict)


def head_name(model: nn.Module) -> str:
    """Qualified name of the output layer: the last nn.Linear in registration order."""
    linear = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    if not linear:
        raise ConfigError(
            f"{type(model).__name__} has no nn.Linear output layer to replace; pick another model.arch"
        )
    return linear[-1]


def replace_head(model: nn.Module, num_classes: int, dropout: float) -> str:
    """A fresh ``num_classes`` output layer, through timm's own ``reset_classifier`` for timm models;
    returns its qualified name (what packaging strips the dropout wrapper from)."""
    if is_timm(model):
        model.reset_classifier(num_classes)
        name = model.pretrained_cfg["classifier"]
    else:
        name = head_name(model)
    parent_name, _, attr = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    old = getattr(parent, attr)
    new = old if is_timm(model) else nn.Linear(old.in_features, num_classes)
    setattr(parent, attr, nn.Sequential(nn.Dropout(dropout), new) if dropout else new)
    return name


def backbone_stages(model: nn.Module, head: str) -> list[nn.Module]:
    """Ordered trainable blocks below the head, coarse enough for "unfreeze the last N stages".

    Top-level children, except that a ``features`` (torchvision's EfficientNet, MobileNet, ConvNeXt, VGG...),
    ``blocks`` or ``stages`` (timm's EfficientNets, ConvNeXts, ViTs...) Sequential is expanded into its own
    children, which are the real stages of those models.
    """
    head_root = head.split(".")[0]
    stages: list[nn.Module] = []
    for name, child in model.named_children():
        if name == head_root:
            continue
        if name in STAGE_CONTAINERS and isinstance(child, nn.Sequential):
            stages.extend(c for c in child.children() if any(True for _ in c.parameters()))
        elif any(True for _ in child.parameters()):
            stages.append(child)
    return stages
