"""The eval preprocessing a run uses: the backbone's pretrained config, then what the user set.

Pretrained weights expect the inputs they were trained on: timm's EfficientNet-Lite0 wants mean = std =
0.5 and bicubic resizing at crop 0.875, torchvision's ResNets ImageNet's mean/std, bilinear, 224 of 256
(232 for the V2 weights). So the defaults come from the library: timm's ``pretrained_cfg`` of the model,
torchvision's weights ``transforms()``; for anything else (no weights, a local file) the library's
default config of the architecture, and ImageNet's values where the library has none. A value set in
``data`` (``mean``, ``std``, ``resize_ratio``, ``interpolation``) wins. The result is the plain dict that
travels with checkpoints and packages and that ``lightning_app/serving/preprocessing.py`` turns into the
one eval transform.
"""

from __future__ import annotations

import functools

from lightning_app.backbone import timm_name
from lightning_app.serving.preprocessing import INTERPOLATIONS
from lightning_app.weights import PACKAGE_PREFIX, is_file_source, torchvision_enum

IMAGENET = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "interpolation": "bilinear",
            "crop_pct": 224 / 256}  # fmt: skip


def eval_resize(image_size: int, resize_ratio: float) -> int:
    return round(image_size * resize_ratio)


@functools.cache
def _timm_defaults(name: str) -> dict:
    import timm  # only for timm architectures

    cfg = timm.get_pretrained_cfg(name)
    if cfg is None:
        return dict(IMAGENET)
    interpolation = cfg.interpolation if cfg.interpolation in INTERPOLATIONS else IMAGENET["interpolation"]
    return {"mean": list(cfg.mean), "std": list(cfg.std), "interpolation": interpolation,
            "crop_pct": cfg.crop_pct}  # fmt: skip


def _torchvision_defaults(arch: str, weights: str | None) -> dict:
    if weights is None or _is_local(weights):
        return dict(IMAGENET)
    preset = torchvision_enum(
        arch, weights
    ).transforms.keywords  # functools.partial(ImageClassification, ...)
    crop, resize = preset["crop_size"], preset.get("resize_size", 256)
    interpolation = preset.get("interpolation")
    return {
        **IMAGENET,
        "mean": list(preset.get("mean", IMAGENET["mean"])),
        "std": list(preset.get("std", IMAGENET["std"])),
        "interpolation": interpolation.value if interpolation is not None else IMAGENET["interpolation"],
        "crop_pct": crop / resize,
    }


def backbone_defaults(arch: str, weights: str | None) -> dict:
    """mean, std, interpolation and crop_pct as the backbone's library says (a timm model's are the same
    with or without its weights: the untrained network is preprocessed like the pretrained one)."""
    name = timm_name(arch)
    if name is None:
        return _torchvision_defaults(arch, weights)
    tagged = weights is not None and weights != "DEFAULT" and not _is_local(weights)
    return _timm_defaults(f"{name}.{weights}" if tagged else name)


def _is_local(weights: str) -> bool:
    return weights.startswith(PACKAGE_PREFIX) or is_file_source(weights)


def resolve(data_cfg, model_cfg) -> dict:
    """The effective eval preprocessing of a run: ``data`` overrides over the backbone's defaults."""
    return preprocessing(data_cfg, backbone_defaults(model_cfg.arch, model_cfg.weights))


def preprocessing(data_cfg, defaults: dict = IMAGENET) -> dict:
    """``data``'s values where set, else ``defaults``; as checkpoints and packages carry it."""
    ratio = data_cfg.resize_ratio if data_cfg.resize_ratio is not None else 1 / defaults["crop_pct"]
    return {
        "image_size": data_cfg.image_size,
        "resize": eval_resize(data_cfg.image_size, ratio),
        "mean": list(data_cfg.mean if data_cfg.mean is not None else defaults["mean"]),
        "std": list(data_cfg.std if data_cfg.std is not None else defaults["std"]),
        "interpolation": str(data_cfg.interpolation or defaults["interpolation"]),
    }
