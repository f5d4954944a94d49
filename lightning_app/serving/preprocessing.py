"""The evaluation preprocessing, defined once: validation and test in training, the run's registered
MLflow model, the local endpoint, ``dogbreeds predict`` and the SageMaker package all build it here.

A network scores what it was evaluated on: the same photo resized with another filter, or normalised
with another mean, moves its probabilities by percents and can flip its label. So the values travel
with every checkpoint and package as one plain dict (``image_size``, ``resize``, ``mean``, ``std``,
``interpolation``), decided at training time from the backbone's pretrained config (see
``lightning_app/pretrained_config.py``), and this function is the only thing that turns them into a
transform. Part of the code inside ``model.tar.gz``: torch and torchvision only.
"""

from __future__ import annotations

import torch
from torchvision.transforms import InterpolationMode, v2

# Checkpoints and packages made before the interpolation was recorded were evaluated with this one.
DEFAULT_INTERPOLATION = "bilinear"
INTERPOLATIONS = {
    "bilinear": InterpolationMode.BILINEAR,
    "bicubic": InterpolationMode.BICUBIC,
    "nearest": InterpolationMode.NEAREST,
}


def interpolation(preprocessing: dict) -> InterpolationMode:
    return INTERPOLATIONS[preprocessing.get("interpolation", DEFAULT_INTERPOLATION)]


def eval_transform(preprocessing: dict) -> v2.Compose:
    """PIL image or uint8 tensor -> normalised float tensor: resize the short side, center crop, normalise."""
    return v2.Compose(
        [
            v2.ToImage(),
            v2.Resize(preprocessing["resize"], interpolation=interpolation(preprocessing), antialias=True),
            v2.CenterCrop(preprocessing["image_size"]),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(list(preprocessing["mean"]), list(preprocessing["std"])),
        ]
    )
