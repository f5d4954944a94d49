"""Resized JPEG copies of the training images, made once and decoded instead of the originals.

When the data loader is the bottleneck (few CPU cores per GPU, small training sizes, sweeps that read the
same images for every trial), most of the decode cost is entropy-decoding pixels that the first resize
throws away; reduced-scale decoding cannot skip that part. A copy whose short side is the eval resize side
decodes several times faster. Its short side (``copy_side``) is the smallest that leaves every random crop at
least the output size, so crops are still downscaled as from the original, never upscaled (the eval resize
side, 256 for 224, left the smallest crops at ~160 px, blown up to 224: blurrier training images than the
originals give). Copies live under a folder per dataset fingerprint and side, so a changed dataset or size
never reads stale copies.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from PIL import Image

from lightning_app.augment import RATIO
from lightning_app.images import load_rgb


def copy_side(image_size: int, min_scale: float) -> int:
    """RandomResizedCrop's smallest crop covers ``min_scale`` of the area at aspect 3/4 (or 4/3): its short
    side is at least sqrt(min_scale * 3/4) of the image's short side."""
    return math.ceil(image_size / math.sqrt(min_scale * RATIO[0]))


def copies_root(cache_dir: str | Path, fingerprint: str, side: int) -> Path:
    """The "upright" suffix marks copies already turned by their EXIF orientation: copies made before
    ``load_rgb`` applied it are sideways and carry no tag, so they are never read again."""
    return Path(cache_dir).expanduser() / "resized" / f"{fingerprint}-{side}-upright"


def write_copy(source: Path, target: Path, side: int) -> None:
    """Short side down to ``side`` (never up), written atomically: concurrent DDP ranks may race here."""
    image = load_rgb(source, side)
    scale = side / min(image.size)
    if scale < 1:
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.BILINEAR)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    image.save(partial, "JPEG", quality=90)
    os.replace(partial, target)


def use_copies(
    samples: list[tuple[Path, int]], source_root: Path, target_root: Path, side: int
) -> list[tuple[Path, int]]:
    """The samples with paths into ``target_root``, writing the copies that are missing."""
    copied = []
    for path, label in samples:
        relative = path.relative_to(source_root)
        if relative.suffix.lower() not in (".jpg", ".jpeg"):  # a.png -> a.png.jpg: never clashes with a.jpg
            relative = relative.with_name(relative.name + ".jpg")
        target = target_root / relative
        if not target.exists():
            write_copy(path, target, side)
        copied.append((target, label))
    return copied
