"""A small, deterministic, learnable stand-in for dogImages (offline demos and tests).

Each breed is a colour palette and a shape; every image draws that shape at a random place, size and
rotation over textured noise, with brightness jitter and a distractor shape from another class, so a
CNN has to learn the class cue rather than a constant pixel. JPEGs are several hundred pixels a side,
like most of the real dataset; ``sizes="photos"`` adds the larger photos dogImages also holds (a quarter
at 800-1280 px, a sixth at 1600-3264 px: camera and phone pictures), so decode cost in benchmarks is realistic.
"""

from __future__ import annotations

import colorsys
import random
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from conf.errors import DogbreedsError


class SampleDataError(DogbreedsError):
    """Arguments that cannot make a usable sample dataset; the message names the argument."""


# The first breeds of dogImages, in its folder naming.
BREEDS = [
    "Affenpinscher", "Afghan_hound", "Airedale_terrier", "Akita", "Alaskan_malamute",
    "American_eskimo_dog", "American_foxhound", "American_staffordshire_terrier",
    "American_water_spaniel", "Anatolian_shepherd_dog", "Australian_cattle_dog",
    "Australian_shepherd", "Australian_terrier", "Basenji", "Basset_hound", "Beagle",
    "Bearded_collie", "Beauceron", "Bedlington_terrier", "Belgian_malinois",
    "Belgian_sheepdog", "Belgian_tervuren", "Bernese_mountain_dog", "Bichon_frise",
    "Black_and_tan_coonhound", "Black_russian_terrier", "Bloodhound", "Bluetick_coonhound",
    "Border_collie", "Border_terrier", "Borzoi", "Boston_terrier",
]  # fmt: skip


SHAPES = ("ellipse", "rectangle", "triangle", "cross")
TYPICAL = ((360, 520), (300, 440))  # width, height ranges: dogImages' common ~500x375
# (cumulative share, width range, height range); the first bucket is TYPICAL.
SIZE_MIXES = {
    "typical": ((1.0, *TYPICAL),),
    "photos": ((0.6, *TYPICAL), (0.85, (800, 1280), (600, 960)), (1.0, (1600, 3264), (1200, 2448))),
}
SPLIT_SIZES = {"train": 1.0, "valid": 0.25, "test": 0.25}


def folder_names(num_classes: int) -> list[str]:
    if not 2 <= num_classes <= len(BREEDS):
        raise SampleDataError(f"--classes must be between 2 and {len(BREEDS)}, got {num_classes}")
    return [f"{i + 1:03d}.{name}" for i, name in enumerate(BREEDS[:num_classes])]


def _class_style(label: int, num_classes: int) -> tuple[tuple[int, int, int], str]:
    hue = label / num_classes
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 0.95)
    return (int(r * 255), int(g * 255), int(b * 255)), SHAPES[label % len(SHAPES)]


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, box: tuple[int, int, int, int], color) -> None:
    x0, y0, x1, y1 = box
    if shape == "ellipse":
        draw.ellipse(box, fill=color)
    elif shape == "rectangle":
        draw.rectangle(box, fill=color)
    elif shape == "triangle":
        draw.polygon([((x0 + x1) // 2, y0), (x1, y1), (x0, y1)], fill=color)
    else:
        w, h = (x1 - x0) // 3, (y1 - y0) // 3
        draw.rectangle((x0 + w, y0, x1 - w, y1), fill=color)
        draw.rectangle((x0, y0 + h, x1, y1 - h), fill=color)


def _size(rng: random.Random, sizes: str) -> tuple[int, int]:
    """A (width, height) from the mix; "typical" draws exactly what it always drew (same seed, same bytes)."""
    buckets = SIZE_MIXES[sizes]
    pick = rng.random() if len(buckets) > 1 else 0.0
    _, widths, heights = next(b for b in buckets if pick < b[0] or b is buckets[-1])
    return rng.randint(*widths), rng.randint(*heights)


def render(label: int, num_classes: int, rng: random.Random, sizes: str = "typical") -> Image.Image:
    width, height = _size(rng, sizes)
    noise = np.random.default_rng(rng.getrandbits(32)).integers(60, 190, (height // 8, width // 8, 3))
    image = Image.fromarray(noise.astype(np.uint8)).resize((width, height), Image.BILINEAR)
    draw = ImageDraw.Draw(image)
    distractor = rng.randrange(num_classes)
    for cls, scale in ((distractor, 0.2), (label, rng.uniform(0.35, 0.6))):
        color, shape = _class_style(cls, num_classes)
        size = int(min(width, height) * scale)
        x, y = rng.randint(0, width - size), rng.randint(0, height - size)
        jitter = rng.uniform(0.8, 1.1)
        _draw_shape(draw, shape, (x, y, x + size, y + size), tuple(min(255, int(c * jitter)) for c in color))
    return image.filter(ImageFilter.GaussianBlur(rng.uniform(0, 1.2)))


def generate(
    out: Path, num_classes: int = 10, train_per_class: int = 24, seed: int = 0, sizes: str = "typical"
) -> dict[str, int]:
    """Write ``out/{train,valid,test}/NNN.Breed/*.jpg``; same arguments, same bytes. ``sizes``: a SIZE_MIXES key."""
    if sizes not in SIZE_MIXES:
        raise SampleDataError(f"sizes must be one of {', '.join(SIZE_MIXES)}, got {sizes!r}")
    if train_per_class < 4:
        raise SampleDataError(
            f"--per-class must be at least 4 (valid/test get a quarter), got {train_per_class}"
        )
    counts: dict[str, int] = {}
    for split_index, (split, fraction) in enumerate(SPLIT_SIZES.items()):
        per_class = max(1, int(train_per_class * fraction))
        for label, folder in enumerate(folder_names(num_classes)):
            rng = random.Random(f"{seed}-{split_index}-{label}")
            target = out / split / folder
            target.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                render(label, num_classes, rng, sizes).save(
                    target / f"{folder.split('.')[1]}_{i:05d}.jpg", quality=90
                )
        counts[split] = per_class * num_classes
    return counts
