"""Image files -> the model's inputs, for training's loaders.

The data pipeline is usually what starves a fine-tuning run: dogImages JPEGs are several hundred
pixels a side, many of them photos of thousands, while the model sees 224 (or far less in sweeps).
Files decode with the serving core's ``decode_upright`` (reduced DCT scale, EXIF orientation), and
validation and test apply the serving core's eval transform: what the run measured is what every
endpoint serves (``lightning_app/serving/``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch.utils.data import Dataset

from lightning_app.serving.image_decode import decode_upright


def load_rgb(path: Path, min_side: int | None) -> Image.Image:
    """Decode to RGB, upright; with ``min_side`` JPEGs decode at the smallest DCT scale keeping both sides >= it."""
    with Image.open(path) as img:
        return decode_upright(img, (min_side, min_side) if min_side else None)[0]


def decode_error(path: Path, err: OSError) -> OSError:
    """A truncated body (the header was fine at setup time) named, with what to do about it."""
    return OSError(f"cannot decode {path}: {err}; delete or replace the file")


def normalize_uint8(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 NCHW batch -> float, scaled to 0..1 and normalised; ``mean``/``std`` shaped (1, 3, 1, 1).

    Train workers hand over uint8 (lightning_app/augment.py): 4x less to pass between processes than
    float32, and ``BreedClassifier`` normalises whole batches on the device. One conversion and two
    in-place passes ((x / 255 - mean) / std folded into x * a - b) cost under half of four allocating
    passes (21 vs 51 ms for 32 images at 224 px on one CPU thread), within 1e-6 of the textbook form."""
    return images.float().mul_(1 / (255 * std)).sub_(mean / std)


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
