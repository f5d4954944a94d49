"""Train-time augmentation on the decoded PIL image, as one callable instead of a torchvision ``v2.Compose``.

The same augmentations as the classic recipe (RandomResizedCrop, horizontal flip, rotation, colour jitter in
random order), sampled from the same torch RNG, applied with PIL's C kernels directly. What it saves is
torchvision v2's per-transform dispatch (input flattening, type checks, parameter tensors): a fixed cost
per transform and image that was as large as the pixel work itself at small sizes, and the crop's copy
(the crop box goes straight to ``Image.resize``). Measured in benchmarks/train_throughput.py.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageEnhance
from torchvision.transforms import RandomResizedCrop

RATIO = (3 / 4, 4 / 3)  # RandomResizedCrop's default aspect range
ENHANCERS = (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color)  # Color is saturation


class TrainAugment:
    """PIL image -> augmented uint8 CHW tensor of ``image_size`` squared (``augment``: the AugmentConfig)."""

    def __init__(self, image_size: int, augment):
        self.image_size = image_size
        self.scale = tuple(augment.random_resized_crop_scale)
        self.flip = augment.horizontal_flip
        self.degrees = float(augment.rotation_degrees)
        self.jitter = float(augment.color_jitter)

    def __call__(self, image: Image.Image) -> torch.Tensor:
        top, left, height, width = RandomResizedCrop.get_params(image, self.scale, RATIO)
        size = (self.image_size, self.image_size)
        image = image.resize(size, Image.BILINEAR, box=(left, top, left + width, top + height))
        if self.flip and torch.rand(1).item() < 0.5:
            image = image.transpose(Image.FLIP_LEFT_RIGHT)
        if self.degrees:
            angle = float(torch.empty(1).uniform_(-self.degrees, self.degrees).item())
            image = image.rotate(angle, Image.NEAREST)  # v2.RandomRotation's defaults: nearest, black fill
        if self.jitter:
            factors = torch.empty(3).uniform_(max(0.0, 1 - self.jitter), 1 + self.jitter).tolist()
            for index in torch.randperm(3).tolist():
                image = ENHANCERS[index](image).enhance(factors[index])
        return torch.from_numpy(np.asarray(image).transpose(2, 0, 1).copy())
