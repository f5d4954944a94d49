"""Training data from an ``s3://`` prefix, against moto in server mode (real HTTP, real boto3)."""

from __future__ import annotations

import logging

import boto3
import pytest
from helpers.training import TINY_RUN, run_overrides

from conf.loader import load_config
from lightning_app import s3_sync
from lightning_app.datamodule import DogBreedsDataModule
from lightning_app.layout import DatasetLayoutError
from lightning_app.train import train

BUCKET = "dogbreeds-data"
URI = f"s3://{BUCKET}/datasets/dogImages"


@pytest.fixture(scope="module")
def s3_dataset(moto_endpoint, sample_root):
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    files = sorted(p for p in sample_root.rglob("*.jpg"))
    for path in files:
        s3.upload_file(str(path), BUCKET, f"datasets/dogImages/{path.relative_to(sample_root).as_posix()}")
    return len(files)


def _cfg(tmp_path, *overrides):
    return load_config(
        run_overrides(TINY_RUN, URI, tmp_path, f"data.cache_dir={tmp_path / 'cache'}", *overrides)
    )


def _synced_counts(caplog) -> list[str]:
    return [
        r.getMessage().split(": ", 1)[1] for r in caplog.records if r.getMessage().startswith("synced s3://")
    ]


def test_train_from_s3_then_cache_hit(s3_dataset, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="lightning_app")
    cfg = _cfg(tmp_path)
    result = train(cfg)
    # fit syncs; test (prepare_data again) finds everything cached.
    assert _synced_counts(caplog) == [
        f"{s3_dataset} downloaded, 0 unchanged",
        f"0 downloaded, {s3_dataset} unchanged",
    ]
    cache = s3_sync.cache_path(URI, tmp_path / "cache")
    assert len(list(cache.rglob("*.jpg"))) == s3_dataset
    assert result.run_id and result.best_checkpoint
    from mlflow import MlflowClient

    tags = MlflowClient(cfg.tracking_uri).get_run(result.run_id).data.tags
    assert tags["dataset_root"] == URI

    # A second run (or sweep trial) on the same node re-lists, downloads nothing, and sees the same data.
    caplog.clear()
    again = DogBreedsDataModule(cfg.data)
    again.prepare_data()
    again.setup("fit")
    assert _synced_counts(caplog) == [f"0 downloaded, {s3_dataset} unchanged"]
    assert again.class_names == ["Affenpinscher", "Afghan_hound", "Airedale_terrier", "Akita"]
    assert {name: len(s.samples) for name, s in again.splits.items()} == {
        "train": 64,
        "valid": 16,
        "test": 16,
    }


def test_changed_object_is_downloaded_again(s3_dataset, tmp_path):
    _, first = s3_sync.sync(URI, tmp_path)
    assert first == {"downloaded": s3_dataset, "skipped": 0}
    key = "datasets/dogImages/valid/004.Akita/replaced.jpg"
    s3 = boto3.client("s3")
    s3.put_object(Bucket=BUCKET, Key=key, Body=b"new bytes")
    try:
        root, second = s3_sync.sync(URI, tmp_path)
        assert second == {"downloaded": 1, "skipped": s3_dataset}
        assert (root / "valid" / "004.Akita" / "replaced.jpg").read_bytes() == b"new bytes"
    finally:
        s3.delete_object(Bucket=BUCKET, Key=key)


def test_missing_prefix_is_a_clear_error(s3_dataset, tmp_path):
    with pytest.raises(
        DatasetLayoutError, match=rf"no class folders under s3://{BUCKET}/nothing/here/train/"
    ):
        DogBreedsDataModule(_cfg(tmp_path, f"data.root=s3://{BUCKET}/nothing/here").data)


def test_malformed_s3_uri():
    with pytest.raises(DatasetLayoutError, match="expected s3://bucket/prefix"):
        s3_sync.parse_s3_uri("s3:/dogImages")


def test_dataset_at_the_bucket_root(moto_endpoint, sample_root, tmp_path):
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="dogbreeds-root")
    files = sorted(sample_root.rglob("*.jpg"))
    for path in files:
        s3.upload_file(str(path), "dogbreeds-root", path.relative_to(sample_root).as_posix())
    assert s3_sync.list_class_folders("s3://dogbreeds-root") == sorted(
        p.name for p in (sample_root / "train").iterdir() if p.is_dir()
    )
    root, counts = s3_sync.sync("s3://dogbreeds-root", tmp_path)
    assert counts == {"downloaded": len(files), "skipped": 0}
    assert sorted(p.relative_to(root) for p in root.rglob("*.jpg")) == [
        p.relative_to(sample_root) for p in files
    ]
