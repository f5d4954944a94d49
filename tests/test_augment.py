"""TrainAugment: the classic train augmentations on PIL, uint8 out, driven by torch's RNG."""

import numpy as np
import pytest
import torch
from PIL import ExifTags, Image, ImageEnhance

from conf.loader import load_config
from lightning_app.augment import TrainAugment, brightness, contrast, dct_reduction
from lightning_app.images import load_rgb


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


def jpeg(tmp_path, width: int, height: int, orientation: int = 1):
    """A smooth photo-like JPEG (noise upsampled: reduced decoding stays close), optionally EXIF-turned."""
    small = photo(width // 16, height // 16).resize((width, height), Image.BILINEAR)
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = orientation
    path = tmp_path / f"{width}x{height}-{orientation}.jpg"
    small.save(path, quality=90, exif=exif)
    return path


@pytest.mark.parametrize(("crop", "size", "expected"), [((300, 250), 224, 1), ((448, 500), 224, 2),
                                                        ((1000, 900), 224, 4), ((3000, 1800), 224, 8)])  # fmt: skip
def test_dct_reduction_keeps_the_crop_at_least_the_output_size(crop, size, expected):
    assert dct_reduction(*crop, size) == expected
    assert min(crop) / expected >= size


@pytest.mark.parametrize("orientation", [1, 6])
def test_crop_then_reduced_decode_matches_the_full_decode(tmp_path, orientation):
    """Same seed, same crop: decoding a large JPEG at the scale the crop allows gives (nearly) the pixels of
    decoding it whole; without the reduction it is exactly TrainAugment on the decoded upright image."""
    path = jpeg(tmp_path, 1200, 1600, orientation)  # orientation 6: stored portrait, seen landscape
    fast, full = TrainAugment(64, augment_cfg()), TrainAugment(64, augment_cfg(), reduced_decode=False)
    for seed in range(3):
        torch.manual_seed(seed)
        with Image.open(path) as opened:
            reduced = fast(opened)
            assert max(opened.size) <= 1600 // 4  # the crop's short side is >= 734 px: 1/4 fits 64 px
        torch.manual_seed(seed)
        with Image.open(path) as opened:
            whole = full(opened)
        torch.manual_seed(seed)
        assert torch.equal(whole, full(load_rgb(path, None)))
        assert (reduced.float() - whole.float()).abs().mean() < 4  # grey levels, after a 1/4 DCT decode
