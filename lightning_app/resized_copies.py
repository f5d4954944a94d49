"""Resized JPEG copies of the training images, made once and decoded instead of the originals.

When the data loader is the bottleneck (few CPU cores per GPU, small training sizes, sweeps that read the
same images for every trial), most of the decode cost is entropy-decoding pixels that the first resize
throws away; reduced-scale decoding cannot skip that part. A copy whose short side is the eval resize side
decodes several times faster and still leaves the random crop a full-size image to crop from. Copies live
under a folder per dataset fingerprint and side, so a changed dataset or size never reads stale copies.
"""

from __future__ import annotations

import os
from pathlib import Path

from PIL import Image

from lightning_app.images import load_rgb


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
