"""dogImages layout validation and the corrupt-image policy: every bad layout is an error naming what to fix."""

from __future__ import annotations

import shutil

import pytest

from lightning_app import layout
from lightning_app.sample_data import generate


@pytest.fixture
def root(tmp_path):
    """A fresh 3-class dataset per test, so tests can break it freely."""
    generate(tmp_path / "data", num_classes=3, train_per_class=4, seed=0)
    return tmp_path / "data"


def test_class_names_come_from_folder_names():
    assert layout.class_name("001.Affenpinscher") == "Affenpinscher"
    assert layout.class_name("133.Yorkshire_terrier") == "Yorkshire_terrier"
    assert layout.class_name("Beagle") == "Beagle"  # no numeric prefix: kept whole
    assert layout.class_name("v1.Beagle") == "v1.Beagle"


def test_valid_layout_lists_classes_in_order(root):
    assert layout.discover_classes(root) == ["001.Affenpinscher", "002.Afghan_hound", "003.Airedale_terrier"]


@pytest.mark.parametrize("split", ["train", "valid"])
def test_missing_split_folder(root, split):
    shutil.rmtree(root / split)
    with pytest.raises(layout.DatasetLayoutError, match=rf"missing split folder .*{split}"):
        layout.discover_classes(root)


def test_test_split_is_optional(root):
    shutil.rmtree(root / "test")
    assert len(layout.discover_classes(root)) == 3


def test_missing_root(tmp_path):
    with pytest.raises(layout.DatasetLayoutError, match="does not exist"):
        layout.discover_classes(tmp_path / "nowhere")


def test_classes_differing_between_splits_name_the_differences(root):
    (root / "valid" / "002.Afghan_hound").rename(root / "valid" / "002.Afghan")
    with pytest.raises(layout.DatasetLayoutError) as err:
        layout.discover_classes(root)
    message = str(err.value)
    assert "valid/" in message
    assert "missing ['002.Afghan_hound']" in message
    assert "extra ['002.Afghan']" in message


def test_class_missing_from_test_split(root):
    shutil.rmtree(root / "test" / "003.Airedale_terrier")
    with pytest.raises(layout.DatasetLayoutError, match=r"test/.*missing \['003.Airedale_terrier'\]"):
        layout.discover_classes(root)


def test_empty_class_folder(root):
    for image in (root / "valid" / "002.Afghan_hound").iterdir():
        image.unlink()
    folders = layout.discover_classes(root)
    with pytest.raises(layout.DatasetLayoutError, match=r"valid/002.Afghan_hound has no images"):
        layout.read_split(root, "valid", folders, "skip")


def _corrupt(root):
    """A non-image with a .jpg name, and a JPEG cut off inside its header."""
    folder = root / "train" / "001.Affenpinscher"
    (folder / "not_an_image.jpg").write_bytes(b"this is an HTML error page, not a JPEG")
    good = next(folder.glob("*.jpg")).read_bytes()
    (folder / "cut_header.jpg").write_bytes(good[:12])
    return {folder / "not_an_image.jpg", folder / "cut_header.jpg"}


def test_corrupt_images_skip_policy_counts_them(root):
    bad = _corrupt(root)
    split = layout.read_split(root, "train", layout.discover_classes(root), "skip")
    assert set(split.skipped) == bad
    assert len(split.samples) == 12
    assert not bad & {path for path, _ in split.samples}


def test_corrupt_images_fail_policy_lists_them(root):
    bad = _corrupt(root)
    with pytest.raises(layout.DatasetLayoutError) as err:
        layout.read_split(root, "train", layout.discover_classes(root), "fail")
    message = str(err.value)
    assert "2 unreadable image(s) in train/" in message
    assert all(str(path) in message for path in bad)
    assert "data.corrupt_images=skip" in message


def test_non_image_files_and_hidden_folders_are_ignored(root):
    (root / "train" / "001.Affenpinscher" / "README.txt").write_text("notes")
    (root / "train" / ".ipynb_checkpoints").mkdir()
    (root / "valid" / ".ipynb_checkpoints").mkdir()
    folders = layout.discover_classes(root)
    assert len(folders) == 3
    assert len(layout.read_split(root, "train", folders, "fail").samples) == 12


def test_fingerprint_tracks_dataset_versions(root, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    assert layout.fingerprint(root) == layout.fingerprint(copy)
    (copy / "train" / "001.Affenpinscher" / "extra.jpg").write_bytes(b"x")
    assert layout.fingerprint(root) != layout.fingerprint(copy)
