"""Train-time augmentation on the decoded PIL image, as one callable instead of a torchvision ``v2.Compose``.

The same augmentations as the classic recipe (RandomResizedCrop, horizontal flip, rotation, colour jitter in
random order), sampled from the same torch RNG, applied with PIL's C kernels directly. What it saves is
torchvision v2's per-transform dispatch (input flattening, type checks, parameter tensors): a fixed cost
per transform and image that was as large as the pixel work itself at small sizes, and the crop's copy
(the crop box goes straight to ``Image.resize``). Measured in benchmarks/train_throughput.py.

It takes the image opened but not yet decoded, and samples the crop box on the header's size first: then
the JPEG decodes at the smallest DCT scale (1/2, 1/4, 1/8) that still leaves the crop at least the output
size, so a 2000 px photo whose crop becomes 224 px costs a fraction of its full decode, and the resize
starts from a few hundred pixels instead of thousands. The crop's distribution is unchanged (sampled on the
full size, as ``RandomResizedCrop`` does) and the crop is never upscaled by the reduction.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageEnhance, ImageStat
from torchvision.transforms import RandomResizedCrop

from lightning_app.serving.image_decode import decode_upright, upright_size

RATIO = (3 / 4, 4 / 3)  # RandomResizedCrop's default aspect range
LEVELS = np.arange(256, dtype=np.float32)


def blend_table(degenerate: float, factor: float) -> list[int]:
    """``Image.blend(flat image of value degenerate, image, factor)`` as a lookup table, for ``Image.point``.

    ImageEnhance's brightness (against black) and contrast (against the grey mean) are that blend with a
    flat image: a per-value map, so one table lookup gives the same bytes as the blend (float32 arithmetic,
    clipped, truncated, as Pillow's C code does) without allocating and blending a flat image."""
    values = np.float32(degenerate) + np.float32(factor) * (LEVELS - np.float32(degenerate))
    return np.clip(values, 0, 255).astype(np.uint8).tolist() * 3


def brightness(image: Image.Image, factor: float) -> Image.Image:
    return image.point(blend_table(0, factor))


def contrast(image: Image.Image, factor: float) -> Image.Image:
    mean = int(ImageStat.Stat(image.convert("L")).mean[0] + 0.5)  # ImageEnhance.Contrast's grey level
    return image.point(blend_table(mean, factor))


def saturation(image: Image.Image, factor: float) -> Image.Image:
    return ImageEnhance.Color(image).enhance(factor)


JITTERS = (brightness, contrast, saturation)  # v2.ColorJitter's order of parameters
DCT_SCALES = (8, 4, 2)  # libjpeg's reductions that PIL's draft mode offers


def dct_reduction(crop_width: int, crop_height: int, size: int) -> int:
    """The largest reduction that keeps the crop >= ``size`` on both sides (1: decode at full size)."""
    return next((s for s in DCT_SCALES if min(crop_width, crop_height) >= size * s), 1)


class TrainAugment:
    """PIL image -> augmented uint8 CHW tensor of ``image_size`` squared (``augment``: the AugmentConfig).

    The image may be opened and not yet loaded (``Image.open``): with ``reduced_decode`` a JPEG then decodes
    at the reduced scale its crop allows."""

    def __init__(self, image_size: int, augment, reduced_decode: bool = True):
        self.image_size = image_size
        self.reduced_decode = reduced_decode
        self.scale = tuple(augment.random_resized_crop_scale)
        self.flip = augment.horizontal_flip
        self.degrees = float(augment.rotation_degrees)
        self.jitter = float(augment.color_jitter)

    def load(self, path: Path) -> torch.Tensor:
        """Open (not decode) the file and augment it: the decode scale then follows the crop."""
        with Image.open(path) as image:
            return self(image)

    def __call__(self, image: Image.Image) -> torch.Tensor:
        full_width, full_height = upright_size(image)
        # get_params reads only the shape: an empty (0, H, W) tensor gives it the upright size, no pixels.
        shape = torch.empty(0, full_height, full_width)
        top, left, height, width = RandomResizedCrop.get_params(shape, self.scale, RATIO)
        size = (self.image_size, self.image_size)
        reduction = dct_reduction(width, height, self.image_size) if self.reduced_decode else 1
        draft = (full_width // reduction, full_height // reduction) if reduction > 1 else None
        image, scale = decode_upright(image, draft)
        box = (left * scale, top * scale, (left + width) * scale, (top + height) * scale)
        image = image.resize(size, Image.BILINEAR, box=box)
        if self.flip and torch.rand(1).item() < 0.5:
            image = image.transpose(Image.FLIP_LEFT_RIGHT)
        if self.degrees:
            angle = float(torch.empty(1).uniform_(-self.degrees, self.degrees).item())
            image = image.rotate(angle, Image.NEAREST)  # v2.RandomRotation's defaults: nearest, black fill
        if self.jitter:
            factors = torch.empty(3).uniform_(max(0.0, 1 - self.jitter), 1 + self.jitter).tolist()
            for index in torch.randperm(3).tolist():
                image = JITTERS[index](image, factors[index])
        return torch.from_numpy(np.asarray(image).transpose(2, 0, 1).copy())
