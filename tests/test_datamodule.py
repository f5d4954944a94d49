"""DogBreedsDataModule on a local folder: loaders, preprocessing metadata, DDP batch split, bad data."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from conf.loader import ConfigError
from lightning_app import layout
from lightning_app.datamodule import DogBreedsDataModule
from lightning_app.images import EvalLoad, ImageSamples, load_rgb
from lightning_app.module import BreedClassifier
from lightning_app.sample_data import generate
from lightning_app.serving.preprocessing import eval_transform


@pytest.fixture
def datamodule(make_cfg):
    dm = DogBreedsDataModule(make_cfg().data)
    dm.prepare_data()
    dm.setup("fit")
    return dm


PIXELS_48 = {"image_size": 48, "resize": 55, "mean": [0.0] * 3, "std": [1.0] * 3}


def test_classes_splits_and_preprocessing(datamodule):
    assert datamodule.class_names == ["Affenpinscher", "Afghan_hound", "Airedale_terrier", "Akita"]
    assert {name: len(split.samples) for name, split in datamodule.splits.items()} == {
        "train": 64,
        "valid": 16,
        "test": 16,
    }
    assert datamodule.has_test and datamodule.skipped_images == 0
    assert datamodule.preprocessing == {
        "image_size": 48,
        "resize": 55,  # round(48 * 256 / 224): ImageNet's ratio, without a backbone to say otherwise
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
        "interpolation": "bilinear",
    }


def test_train_loader_hands_uint8_batches_that_the_module_normalises(datamodule, make_cfg):
    loader = datamodule.train_dataloader()
    images, labels = next(iter(loader))
    assert images.shape == (16, 3, 48, 48) and images.dtype == torch.uint8
    assert labels.dtype == torch.int64 and set(labels.tolist()) <= {0, 1, 2, 3}
    assert len(loader) == 4 and loader.drop_last

    model_cfg = OmegaConf.to_object(make_cfg().model)
    module = BreedClassifier(model_cfg, datamodule.class_names, datamodule.preprocessing)
    normalised, same_labels = module.on_after_batch_transfer((images, labels), 0)
    mean = torch.tensor(datamodule.preprocessing["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(datamodule.preprocessing["std"]).view(1, 3, 1, 1)
    assert normalised.dtype == torch.float32 and same_labels is labels
    torch.testing.assert_close(normalised, (images / 255 - mean) / std)
    val_images, _ = next(iter(datamodule.val_dataloader()))  # eval batches arrive normalised: left alone
    assert module.on_after_batch_transfer((val_images, labels), 0)[0] is val_images


def test_eval_loader_is_deterministic(datamodule):
    first = torch.cat([images for images, _ in datamodule.val_dataloader()])
    second = torch.cat([images for images, _ in datamodule.val_dataloader()])
    assert first.shape == (16, 3, 48, 48)
    assert torch.equal(first, second)


def _ddp_trainer() -> L.Trainer:
    """A real 2-process DDP Trainer; nothing is launched until fit, but world_size is known."""
    return L.Trainer(accelerator="cpu", devices=2, strategy="ddp", logger=False, enable_checkpointing=False)


def test_global_batch_is_split_across_ddp_ranks(make_cfg):
    dm = DogBreedsDataModule(make_cfg("data.batch_size=16").data)
    dm.trainer = _ddp_trainer()
    dm.setup("fit")
    assert dm.per_device_batch_size == 8


def test_batch_size_not_dividing_across_ranks_is_an_error(make_cfg):
    dm = DogBreedsDataModule(make_cfg("data.batch_size=15").data)
    dm.trainer = _ddp_trainer()
    with pytest.raises(
        ConfigError, match=r"data.batch_size=15 does not divide across 2 DDP processes.*e.g. 14"
    ):
        dm.setup("fit")


def test_layout_errors_surface_before_training(make_cfg, tmp_path):
    generate(tmp_path / "bad", num_classes=2, train_per_class=4)
    (tmp_path / "bad" / "valid").rename(tmp_path / "bad" / "validation")
    with pytest.raises(layout.DatasetLayoutError, match="missing split folder"):
        DogBreedsDataModule(make_cfg(f"data.root={tmp_path / 'bad'}").data)


@pytest.mark.parametrize("policy", ["skip", "fail"])
def test_corrupt_image_policy_in_setup(make_cfg, tmp_path, policy):
    root = tmp_path / "data"
    generate(root, num_classes=2, train_per_class=4)
    (root / "valid" / "002.Afghan_hound" / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    dm = DogBreedsDataModule(make_cfg(f"data.root={root}", f"data.corrupt_images={policy}").data)
    if policy == "fail":
        with pytest.raises(layout.DatasetLayoutError, match="broken.jpg"):
            dm.setup("fit")
    else:
        dm.setup("fit")
        assert dm.skipped_images == 1
        assert len(dm.splits["valid"].samples) == 2


def test_truncated_image_body_names_the_file(sample_root, tmp_path):
    """A header that reads but a body that is cut off passes setup; decoding it says which file to fix."""
    source = next((sample_root / "train" / "001.Affenpinscher").glob("*.jpg"))
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(source.read_bytes()[:2000])
    dataset = ImageSamples(
        [(cut, 0)], EvalLoad(eval_transform(PIXELS_48 | {"mean": [0.5] * 3, "std": [0.5] * 3}), 55)
    )
    with pytest.raises(OSError, match=r"cannot decode .*cut.jpg.*delete or replace"):
        dataset[0]


def test_reduced_decode_keeps_enough_pixels(sample_root):
    path = next((sample_root / "train" / "002.Afghan_hound").glob("*.jpg"))
    with Image.open(path) as original:
        full_size = original.size
    full = load_rgb(path, None)
    reduced = load_rgb(path, 55)
    assert full.size == full_size
    assert min(reduced.size) >= 55 and reduced.size[0] < full_size[0] // 2
    to_pixels = eval_transform(PIXELS_48)  # 0..1, no normalisation
    fast, slow = to_pixels(reduced), to_pixels(full)
    assert fast.shape == slow.shape == (3, 48, 48)
    assert (fast - slow).abs().mean() < 0.05  # within a few grey levels after the final resize


def test_resized_copies_are_made_once_and_used_for_training(make_cfg, sample_root, tmp_path):
    cfg = make_cfg("data.resized_copies=true", f"data.cache_dir={tmp_path / 'cache'}").data
    dm = DogBreedsDataModule(cfg)
    dm.setup("fit")
    copies = [path for path, _ in dm.splits["train"].samples]
    assert len(copies) == 64 and all(path.is_relative_to(tmp_path / "cache" / "resized") for path in copies)
    for path in copies[:8]:
        with Image.open(path) as image:
            assert min(image.size) == 79  # 48 / sqrt(0.5 * 3/4): the smallest random crop is still >= 48 px
    assert all(path.is_relative_to(sample_root) for path, _ in dm.splits["valid"].samples)  # eval: originals
    written = {path: path.stat().st_mtime_ns for path in copies}

    again = DogBreedsDataModule(cfg)
    again.setup("fit")
    assert {path: path.stat().st_mtime_ns for path, _ in again.splits["train"].samples} == written
    images, _ = next(iter(again.train_dataloader()))
    assert images.shape == (16, 3, 48, 48)


def test_local_copy_of_an_s3_root_is_read_without_touching_s3(sample_root, monkeypatch):
    """A SageMaker job's data channel: read the copy, keep the s3:// root for the run's records."""
    from conf.loader import load_config

    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # any S3 call would fail
    cfg = load_config(["data.root=s3://no-such-bucket/dogImages", f"data.local_copy={sample_root}"]).data
    datamodule = DogBreedsDataModule(cfg)
    datamodule.prepare_data()
    datamodule.setup()
    assert datamodule.local_root == sample_root and len(datamodule.class_names) == 4
    assert datamodule.cfg.root == "s3://no-such-bucket/dogImages"
