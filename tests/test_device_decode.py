"""data.decode_device: workers read bytes, the module decodes and augments per batch on the device.

Run here with device ``cpu``: eval batches must equal the worker path's exactly when that path decodes at full
size too (``data.fast_decode=false``: the device path has no DCT-domain downscale); the ``gpu`` test repeats
the comparison with nvJPEG on CUDA (within two grey levels: nvJPEG's IDCT may round differently)."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from lightning_app.datamodule import DogBreedsDataModule
from lightning_app.device_decode import EncodedBatch
from lightning_app.module import BreedClassifier


def loaders(make_cfg, device: str):
    cfg = make_cfg(f"data.decode_device={device}", "data.num_workers=0")
    ours, workers = (
        DogBreedsDataModule(cfg.data),
        DogBreedsDataModule(make_cfg("data.num_workers=0", "data.fast_decode=false").data),
    )
    for dm in (ours, workers):
        dm.setup("fit")
    module = BreedClassifier(OmegaConf.to_object(cfg.model), ours.class_names, ours.preprocessing)
    return ours, workers, module


def test_eval_batches_equal_the_worker_path_and_train_batches_are_augmented_uint8(make_cfg):
    ours, workers, module = loaders(make_cfg, "cpu")
    module.eval()
    encoded, labels = next(iter(ours.val_dataloader()))
    assert isinstance(encoded, EncodedBatch) and encoded.data[0].dtype == torch.uint8
    decoded, same_labels = module.on_before_batch_transfer((encoded, labels), 0)
    expected, expected_labels = next(iter(workers.val_dataloader()))
    assert torch.equal(same_labels, expected_labels)
    assert torch.equal(decoded, expected)

    module.train()
    size = ours.cfg.image_size
    encoded, labels = next(iter(ours.train_dataloader()))
    images, _ = module.on_before_batch_transfer((encoded, labels), 0)
    assert images.dtype == torch.uint8 and images.shape == (len(labels), 3, size, size)
    normalised, _ = module.on_after_batch_transfer((images, labels), 0)
    assert normalised.dtype == torch.float32


def test_an_unknown_decode_device_is_a_config_error(make_cfg):
    with pytest.raises(Exception, match="decode_device"):
        make_cfg("data.decode_device=tpu")


@pytest.mark.gpu
def test_nvjpeg_eval_batches_match_the_worker_path(make_cfg):
    ours, workers, module = loaders(make_cfg, "cuda")
    module.eval()
    encoded, labels = next(iter(ours.val_dataloader()))
    decoded, _ = module.on_before_batch_transfer((encoded, labels), 0)
    expected, _ = next(iter(workers.val_dataloader()))
    assert decoded.device.type == "cuda"
    torch.testing.assert_close(decoded.cpu(), expected, atol=2 / 255 / 0.224, rtol=0)
