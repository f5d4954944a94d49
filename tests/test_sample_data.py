"""The generated stand-in for dogImages: deterministic bytes, the real layout, realistic JPEG sizes."""

from __future__ import annotations

import hashlib

import pytest
from PIL import Image

from lightning_app import layout
from lightning_app.sample_data import SampleDataError, generate


def _digests(root):
    return {
        path.relative_to(root).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def test_same_arguments_give_the_same_bytes(tmp_path):
    first = generate(tmp_path / "a", num_classes=3, train_per_class=4, seed=7)
    second = generate(tmp_path / "b", num_classes=3, train_per_class=4, seed=7)
    assert first == second == {"train": 12, "valid": 3, "test": 3}
    assert _digests(tmp_path / "a") == _digests(tmp_path / "b")
    generate(tmp_path / "c", num_classes=3, train_per_class=4, seed=8)
    other = _digests(tmp_path / "c")
    assert other.keys() == _digests(tmp_path / "a").keys()
    assert other != _digests(tmp_path / "a")


def test_dogimages_layout_with_realistic_jpegs(tmp_path):
    counts = generate(tmp_path, num_classes=4, train_per_class=8, seed=0)
    assert counts == {"train": 32, "valid": 8, "test": 8}
    folders = layout.discover_classes(tmp_path)
    assert folders[:2] == ["001.Affenpinscher", "002.Afghan_hound"]
    for split, expected in counts.items():
        samples = layout.read_split(tmp_path, split, folders, "fail").samples
        assert len(samples) == expected
    for path, _ in layout.read_split(tmp_path, "train", folders, "fail").samples:
        with Image.open(path) as image:
            assert image.format == "JPEG" and image.mode == "RGB"
            # dogImages photos are several hundred pixels a side; decode cost in benchmarks depends on it.
            assert min(image.size) >= 300 and max(image.size) <= 600
        assert path.stat().st_size > 5_000


@pytest.mark.parametrize(("classes", "per_class", "match"), [(1, 8, "--classes"), (4, 3, "--per-class")])
def test_bad_arguments(tmp_path, classes, per_class, match):
    with pytest.raises(SampleDataError, match=match):
        generate(tmp_path, num_classes=classes, train_per_class=per_class)


def test_photo_sizes_add_the_large_pictures_of_the_real_dataset(tmp_path):
    generate(tmp_path, num_classes=2, train_per_class=8, seed=0, sizes="photos")
    sizes = []
    for path in sorted((tmp_path / "train").rglob("*.jpg")):
        with Image.open(path) as image:
            sizes.append(max(image.size))
    assert min(sizes) >= 360 and max(sizes) > 1000  # typical ones and large photos
    with pytest.raises(SampleDataError, match="sizes must be one of typical, photos"):
        generate(tmp_path / "bad", num_classes=2, train_per_class=4, sizes="huge")
