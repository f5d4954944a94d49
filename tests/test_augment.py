"""TrainAugment: the classic train augmentations on PIL, uint8 out, driven by torch's RNG."""

import numpy as np
import pytest
import torch
from PIL import Image, ImageEnhance

from conf.loader import load_config
from lightning_app.augment import TrainAugment, brightness, contrast


def photo(width: int, height: int) -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def augment_cfg(*overrides: str):
    return load_config([f"data.augment.{o}" for o in overrides]).data.augment


def test_output_is_a_uint8_square_and_repeats_under_the_same_seed():
    augment = TrainAugment(64, augment_cfg())
    image = photo(150, 110)
    torch.manual_seed(3)
    first = augment(image)
    torch.manual_seed(3)
    assert first.dtype == torch.uint8 and first.shape == (3, 64, 64)
    assert torch.equal(first, augment(image))
    assert not torch.equal(first, augment(image))  # the next draw differs


def test_with_every_augmentation_off_it_is_a_plain_resize():
    """Scale 1 of a square image leaves RandomResizedCrop the whole image: only the resize remains."""
    augment = TrainAugment(
        48, augment_cfg("random_resized_crop_scale=[1.0,1.0]", "horizontal_flip=false",
                        "rotation_degrees=0", "color_jitter=0")
    )  # fmt: skip
    image = photo(100, 100)
    expected = np.asarray(image.resize((48, 48), Image.BILINEAR)).transpose(2, 0, 1)
    assert np.array_equal(augment(image).numpy(), expected)


@pytest.mark.parametrize("factor", [0.0, 0.8, 1.0, 1.2, 3.0])
def test_table_jitters_give_the_bytes_of_pillows_enhancers(factor):
    image = photo(90, 70)
    pairs = [(brightness, ImageEnhance.Brightness), (contrast, ImageEnhance.Contrast)]
    for ours, pillows in pairs:
        assert np.array_equal(np.asarray(ours(image, factor)), np.asarray(pillows(image).enhance(factor)))
