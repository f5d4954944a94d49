"""Reading and validating the dogImages folder layout.

``root/{train,valid,test}/NNN.Breed_name/*.jpg``. Validation happens once, up front, with errors a
user can act on (which split, which class, which file), because a bad layout found three epochs into
a sweep wastes hours.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from conf.errors import DogbreedsError
from conf.schema.choices import CorruptImages

SPLITS = ("train", "valid", "test")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


class DatasetLayoutError(DogbreedsError):
    """The dataset at data.root is missing or does not follow the dogImages layout; the message says
    what to fix."""


def class_name(folder_name: str) -> str:
    """``001.Affenpinscher`` -> ``Affenpinscher``; folders without a numeric prefix keep their name."""
    prefix, dot, rest = folder_name.partition(".")
    return rest if dot and prefix.isdigit() else folder_name


@dataclass(frozen=True)
class Split:
    name: str
    samples: list[tuple[Path, int]]
    skipped: list[Path]


def class_folders(split_dir: Path) -> list[str]:
    return sorted(p.name for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith("."))


def image_files(class_dir: Path) -> list[Path]:
    return sorted(p for p in class_dir.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def readable_header(path: Path) -> bool:
    """Cheap check (header only, no decode) that catches non-images and files cut before the header."""
    try:
        with Image.open(path) as img:
            img.size  # noqa: B018 - touching size forces the header parse
        return True
    except (UnidentifiedImageError, OSError, SyntaxError):
        return False


def read_split(root: Path, split: str, folders: list[str], corrupt_images: CorruptImages) -> Split:
    """List a split's samples, applying the corrupt-image policy."""
    samples: list[tuple[Path, int]] = []
    skipped: list[Path] = []
    for label, folder in enumerate(folders):
        files = image_files(root / split / folder)
        if not files:
            raise DatasetLayoutError(
                f"class folder {root / split / folder} has no images ({', '.join(sorted(IMAGE_SUFFIXES))}); "
                "remove the folder from every split or add images to it"
            )
        for path in files:
            if readable_header(path):
                samples.append((path, label))
            else:
                skipped.append(path)
    if skipped and corrupt_images == CorruptImages.fail:
        listed = "\n  ".join(str(p) for p in skipped[:20])
        raise DatasetLayoutError(
            f"{len(skipped)} unreadable image(s) in {split}/ (data.corrupt_images=fail):\n  {listed}\n"
            "delete or replace them, or set data.corrupt_images=skip to train without them"
        )
    return Split(split, samples, skipped)


def discover_classes(root: Path) -> list[str]:
    """Class folder names, checked to be identical in every split present (test is optional)."""
    if not root.is_dir():
        raise DatasetLayoutError(f"data root {root} does not exist or is not a folder")
    for split in SPLITS[:2]:  # train/ and valid/ are required
        if not (root / split).is_dir():
            raise DatasetLayoutError(
                f"missing split folder {root / split}: the dogImages layout needs "
                f"{', '.join(s + '/' for s in SPLITS[:2])} (and optionally test/) under data.root"
            )
    reference = class_folders(root / "train")
    if not reference:
        raise DatasetLayoutError(f"{root / 'train'} has no class folders (expected e.g. 001.Affenpinscher/)")
    for split in SPLITS[1:]:
        if not (root / split).is_dir():
            continue
        folders = class_folders(root / split)
        if folders != reference:
            missing = sorted(set(reference) - set(folders))
            extra = sorted(set(folders) - set(reference))
            raise DatasetLayoutError(
                f"classes in {split}/ differ from train/: missing {missing or 'none'}, extra {extra or 'none'}; "
                "every split must have the same class folders"
            )
    return reference


def fingerprint(root: Path) -> str:
    """A short hash of every file's relative path and size: identifies the dataset version in MLflow
    without reading image bytes (fast on 8k files)."""
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file():
            digest.update(f"{path.relative_to(root).as_posix()}:{path.stat().st_size}\n".encode())
    return digest.hexdigest()[:16]
