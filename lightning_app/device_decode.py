"""The data path for an accelerator: workers only read file bytes; decoding and augmentation run per batch
on the device (``data.decode_device``).

With ``cuda``, JPEGs decode with nvJPEG (``torchvision.io.decode_jpeg(..., device="cuda")``) and the crop,
flip, rotation and colour jitter run as tensor kernels on the GPU, so a few CPU workers can feed a fast GPU.
With ``cpu`` the same code runs on the CPU (what the tests exercise; slower than the PIL workers on CPU,
where torchvision's tensor kernels for rotation and colour jitter cost several times PIL's). Eval batches go
through the very ``eval_transform`` of the worker path, so they are identical to it where the decoders agree
(tested on CPU against the worker path with ``data.fast_decode=false``: this path always decodes at full
size, nvJPEG has no DCT-domain downscale).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torchvision.io import ImageReadMode, decode_image, decode_jpeg
from torchvision.transforms import v2

from lightning_app.serving.preprocessing import eval_transform

JPEG_MAGIC = b"\xff\xd8"


def read_encoded(path: Path) -> torch.Tensor:
    """The file's bytes as a uint8 tensor: the only work left to the DataLoader workers."""
    return torch.frombuffer(bytearray(path.read_bytes()), dtype=torch.uint8)


@dataclass
class EncodedBatch:
    """A batch of undecoded images; ``BreedClassifier.on_before_batch_transfer`` decodes it."""

    data: list[torch.Tensor]
    decoder: DeviceDecoder

    def decode(self, train: bool) -> torch.Tensor:
        return self.decoder(self.data, train)


class EncodedCollate:
    """DataLoader ``collate_fn``: the byte tensors stay a list (their lengths differ), labels are stacked."""

    def __init__(self, decoder: DeviceDecoder):
        self.decoder = decoder

    def __call__(self, items) -> tuple[EncodedBatch, torch.Tensor]:
        labels = torch.tensor([label for _, label in items])
        return EncodedBatch([data for data, _ in items], self.decoder), labels


class DeviceDecoder:
    """Bytes -> train batch (augmented uint8 NCHW, normalised later by the module) or eval batch (normalised)."""

    def __init__(self, cfg, preprocessing: dict):
        """``cfg``: the ``data`` config section (``decode_device`` set); ``preprocessing``: the run's eval
        preprocessing (``DogBreedsDataModule.preprocessing``)."""
        self.device = torch.device(str(cfg.decode_device))
        augment = cfg.augment
        steps = [v2.RandomResizedCrop(cfg.image_size, scale=tuple(augment.random_resized_crop_scale))]
        if augment.horizontal_flip:
            steps.append(v2.RandomHorizontalFlip())
        if augment.rotation_degrees:
            steps.append(v2.RandomRotation(augment.rotation_degrees))
        if augment.color_jitter:
            strength = augment.color_jitter
            steps.append(v2.ColorJitter(brightness=strength, contrast=strength, saturation=strength))
        self.train_transform = v2.Compose(steps)
        self.eval_transform = eval_transform(preprocessing)

    def decode(self, data: list[torch.Tensor]) -> list[torch.Tensor]:
        """RGB, upright (EXIF); JPEGs in one batched call on ``device`` (nvJPEG on CUDA), others on the CPU."""
        jpegs = [i for i, d in enumerate(data) if bytes(d[:2]) == JPEG_MAGIC]
        images: list[torch.Tensor | None] = [None] * len(data)
        if jpegs:
            decoded = decode_jpeg(
                [data[i] for i in jpegs],
                mode=ImageReadMode.RGB,
                device=self.device,
                apply_exif_orientation=True,
            )
            for index, image in zip(jpegs, decoded, strict=True):
                images[index] = image
        for index, image in enumerate(images):
            if image is None:
                rgb = decode_image(data[index], ImageReadMode.RGB, apply_exif_orientation=True)
                images[index] = rgb.to(self.device)
        return images

    def __call__(self, data: list[torch.Tensor], train: bool) -> torch.Tensor:
        transform = self.train_transform if train else self.eval_transform
        return torch.stack([transform(image) for image in self.decode(data)])
