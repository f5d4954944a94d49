"""Image decoding and transforms for training.

The data pipeline is usually what starves a fine-tuning run: dogImages JPEGs are several hundred
pixels a side, many of them photos of thousands, while the model sees 224 (or far less in sweeps).
``decode_upright`` asks libjpeg to decode at a reduced DCT scale (PIL's draft mode: 1/2, 1/4, 1/8) when the
image is at least twice the size needed, which cuts decode time several-fold and is visually equivalent
after the final resize (the train path picks the scale from its random crop: lightning_app/augment.py).

Photos taken with the camera turned are stored sideways with an EXIF orientation tag; ``load_rgb`` turns
them upright with ``ImageOps.exif_transpose``, exactly as the serving code does (``image_decode.py`` in
the package), so the model learns and predicts on the image as people see it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import ExifTags, Image, ImageOps
from torch.utils.data import Dataset
from torchvision.transforms import v2

TRANSPOSED = (5, 6, 7, 8)  # EXIF orientations that swap width and height


def is_transposed(image: Image.Image) -> bool:
    return image.getexif().get(ExifTags.Base.Orientation, 1) in TRANSPOSED


def upright_size(image: Image.Image) -> tuple[int, int]:
    """(width, height) as people see the image, from the header alone (nothing decoded yet)."""
    return image.size[::-1] if is_transposed(image) else image.size


def decode_upright(image: Image.Image, min_size: tuple[int, int] | None) -> tuple[Image.Image, float]:
    """An opened image -> (RGB upright, its scale relative to ``upright_size``).

    With ``min_size`` (upright width, height) a JPEG not yet loaded decodes at the smallest DCT scale keeping
    both sides >= it; the scale is exact (1/2, 1/4, 1/8: libjpeg's pixel grid), so boxes chosen on the full
    size map onto the reduced image by multiplying."""
    scale = 1.0
    if min_size and image.format == "JPEG":
        stored = image.size
        drafted = image.draft("RGB", min_size[::-1] if is_transposed(image) else min_size)
        if drafted:
            scale = drafted[1][2] / stored[0]
    rgb = image.convert("RGB")
    ImageOps.exif_transpose(rgb, in_place=True)
    return rgb, scale


def load_rgb(path: Path, min_side: int | None) -> Image.Image:
    """Decode to RGB, upright; with ``min_side`` JPEGs decode at the smallest DCT scale keeping both sides >= it."""
    with Image.open(path) as img:
        return decode_upright(img, (min_side, min_side) if min_side else None)[0]


def decode_error(path: Path, err: OSError) -> OSError:
    """A truncated body (the header was fine at setup time) named, with what to do about it."""
    return OSError(f"cannot decode {path}: {err}; delete or replace the file")


def eval_resize(image_size: int, resize_ratio: float) -> int:
    return round(image_size * resize_ratio)


def normalize_uint8(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 NCHW batch -> float, scaled to 0..1 and normalised; ``mean``/``std`` shaped (1, 3, 1, 1).

    Train workers hand over uint8 (lightning_app/augment.py): 4x less to pass between processes than
    float32, and ``BreedClassifier`` normalises whole batches on the device. One conversion and two
    in-place passes ((x / 255 - mean) / std folded into x * a - b) cost under half of four allocating
    passes (21 vs 51 ms for 32 images at 224 px on one CPU thread), within 1e-6 of the textbook form."""
    return images.float().mul_(1 / (255 * std)).sub_(mean / std)


def eval_transform(image_size: int, resize_ratio: float, mean, std) -> v2.Compose:
    """Resize the short side, center crop: the same preprocessing the serving code applies."""
    return v2.Compose(
        [
            v2.ToImage(),
            v2.Resize(eval_resize(image_size, resize_ratio), antialias=True),
            v2.CenterCrop(image_size),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(list(mean), list(std)),
        ]
    )


class ImageSamples(Dataset):
    """(path, label) samples, each turned into the model's input by ``load`` in the DataLoader workers:
    ``TrainAugment.load`` (train), ``EvalLoad`` (validation, test) or ``device_decode.read_encoded`` (the
    bytes alone, decoded on the device). A file that cannot be read or decoded is named in the error."""

    def __init__(self, samples: list[tuple[Path, int]], load: Callable[[Path], Any]):
        self.samples = samples
        self.load = load

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        path, label = self.samples[index]
        try:
            return self.load(path), label
        except OSError as err:
            raise decode_error(path, err) from err


@dataclass(frozen=True)
class EvalLoad:
    """Path -> the eval-transformed tensor; ``decode_min_side`` lets libjpeg decode at a reduced scale."""

    transform: Callable[[Image.Image], torch.Tensor]
    decode_min_side: int | None

    def __call__(self, path: Path) -> torch.Tensor:
        return self.transform(load_rgb(path, self.decode_min_side))
