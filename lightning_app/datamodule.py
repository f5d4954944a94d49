"""LightningDataModule over the dogImages layout, from a local folder or an s3:// prefix.

DDP-safe by construction: the S3 sync (network, disk) runs in ``prepare_data``, which Lightning calls
once per node; ``setup`` only reads the local folder, so every rank builds identical datasets.
"""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader

from conf.loader import ConfigError
from lightning_app import layout, pretrained_config, resized_copies, s3_sync
from lightning_app.augment import TrainAugment
from lightning_app.device_decode import DeviceDecoder, EncodedCollate, read_encoded
from lightning_app.images import EvalLoad, ImageSamples
from lightning_app.serving.preprocessing import eval_transform

log = logging.getLogger(__name__)


class DogBreedsDataModule(L.LightningDataModule):
    def __init__(self, cfg, preprocessing: dict | None = None):
        """``cfg`` is the ``data`` config section (see conf/schema/training.py: DataConfig);
        ``preprocessing`` the run's eval preprocessing (``pretrained_config.resolve``: the backbone's,
        which ``train`` passes), by default ``data``'s values over ImageNet's."""
        super().__init__()
        self.cfg = cfg
        self.preprocessing = preprocessing or pretrained_config.preprocessing(cfg)
        self.splits: dict[str, layout.Split] = {}
        # Classes are known up front (the head is sized from them) and a bad local layout fails before
        # a Trainer or a sweep starts. For S3 this is a listing only: every rank may do it, no download.
        if self.is_s3 and not cfg.local_copy:
            self.class_folders = s3_sync.list_class_folders(cfg.root)
        else:
            self.class_folders = layout.discover_classes(self.local_root)
        self.class_names = [layout.class_name(f) for f in self.class_folders]

    @property
    def is_s3(self) -> bool:
        return self.cfg.root.startswith("s3://")

    @property
    def local_root(self) -> Path:
        if self.cfg.local_copy:
            return Path(self.cfg.local_copy).expanduser()
        if self.is_s3:
            return s3_sync.cache_path(self.cfg.root, self.cfg.cache_dir)
        return Path(self.cfg.root).expanduser()

    def prepare_data(self) -> None:
        if self.is_s3 and not self.cfg.local_copy:
            _, counts = s3_sync.sync(self.cfg.root, self.cfg.cache_dir)
            log.info(
                "synced %s: %d downloaded, %d unchanged",
                self.cfg.root,
                counts["downloaded"],
                counts["skipped"],
            )

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        root = self.local_root
        folders = layout.discover_classes(root)
        if folders != self.class_folders:
            raise layout.DatasetLayoutError(f"classes under {root} changed since the run started; restart it")
        for split in layout.SPLITS:
            if (root / split).is_dir():
                self.splits[split] = layout.read_split(root, split, folders, self.cfg.corrupt_images)
        if self.cfg.resized_copies:  # train only: validation stays on the originals, as serving sees them
            side = resized_copies.copy_side(
                self.cfg.image_size, self.cfg.augment.random_resized_crop_scale[0]
            )
            target = resized_copies.copies_root(self.cfg.cache_dir, layout.fingerprint(root), side)
            train = self.splits["train"]
            samples = resized_copies.use_copies(train.samples, root, target, side)
            self.splits["train"] = layout.Split("train", samples, train.skipped)
        skipped = self.skipped_images
        if skipped:
            log.warning("skipped %d unreadable image(s) (data.corrupt_images=skip)", skipped)
        self.per_device_batch_size  # noqa: B018 - raise the divisibility error before any loader exists

    @property
    def skipped_images(self) -> int:
        return sum(len(s.skipped) for s in self.splits.values())

    @property
    def has_test(self) -> bool:
        return "test" in self.splits

    @property
    def world_size(self) -> int:
        return self.trainer.world_size if self.trainer is not None else 1

    @property
    def per_device_batch_size(self) -> int:
        """data.batch_size is the global batch: the same hyperparameter means the same thing on 1 or 8 GPUs."""
        size, world = self.cfg.batch_size, self.world_size
        if size < 1 or size % world:
            raise ConfigError(
                f"data.batch_size={size} does not divide across {world} DDP processes; "
                f"use a multiple of {world} (e.g. {max(world, size // world * world)})"
            )
        return size // world

    def _decode_side(self) -> int | None:
        return self.preprocessing["resize"] if self.cfg.fast_decode else None

    def _loader(self, split: str, train: bool) -> DataLoader:
        cfg = self.cfg
        samples = self.splits[split].samples
        collate = None
        if cfg.decode_device:  # workers read bytes; the module decodes and augments on its device
            load, collate = read_encoded, EncodedCollate(DeviceDecoder(cfg, self.preprocessing))
        elif train:  # the crop is chosen before decoding, so the decode scale fits the crop
            load = TrainAugment(cfg.image_size, cfg.augment, cfg.fast_decode).load
        else:
            load = EvalLoad(eval_transform(self.preprocessing), self._decode_side())
        dataset = ImageSamples(samples, load)
        return DataLoader(
            dataset,
            collate_fn=collate,
            batch_size=self.per_device_batch_size,
            shuffle=train,
            drop_last=train and len(dataset) > self.per_device_batch_size,
            num_workers=cfg.num_workers,
            pin_memory=cfg.pin_memory and torch.cuda.is_available(),
            persistent_workers=cfg.persistent_workers and cfg.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("valid", train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", train=False)
