"""Image bytes -> upright RGB image, with the cost of decoding bounded whatever the image's structure.

Part of the code inside ``model.tar.gz`` (see ``inference.py``): Pillow and the standard library only.

Three bounds, each cheaper than the work it prevents:

- pixels: the size is read from the header and checked before any decoding (decompression bombs);
- JPEG scans: a progressive JPEG may repeat scans over the whole image at will (libjpeg only warns),
  and each scan costs a pass over every block: a 171 KB file with thousands of scans cost seconds to
  minutes of CPU. The markers are walked before decoding and more scans than ``max_jpeg_scans`` are
  refused; cameras and encoders write about 10 (libjpeg's progressive script), optimisers a few dozen;
- time: Pillow decodes in C without giving control back, but it asks its file for the data in pieces
  (64 KiB), and the file here asks the request's ``Budget`` before each one; decoding is abandoned
  within one piece once the deadline passes or the client has left. A piece of a multi-scan JPEG can
  hold hundreds of whole-image scans, so those are handed out in 1 KiB pieces (measured on a busy 2-core
  machine: a hostile piece then costs about 0.15 s, a 12 MP progressive photo decodes 3% slower);
  baseline JPEGs and other formats do bounded work per byte and keep the full pieces.

Photos taken sideways are stored sideways with an EXIF orientation tag; ``decode_upright`` turns them
upright (``ImageOps.exif_transpose``) and is the one decode of training's loaders too
(``lightning_app/images.py``, ``lightning_app/augment.py``), so the model learns and predicts on the image
as people see it, decoded at the same DCT scale.

No torch here: decoding runs in the server's decoding threads, and tensor work belongs to the model
thread (``predict_many`` applies the eval transform; see ``deploy/local_endpoint/batching.py``).
"""

from __future__ import annotations

import io
import re
from typing import TYPE_CHECKING

from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

if __package__:  # imported from the repository or as a package module by the local endpoint
    from .limits import Budget, RequestError
else:  # SageMaker puts code/ on the path and imports modules top-level
    from limits import Budget, RequestError

if TYPE_CHECKING:
    from inference import Model

IMAGE_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF")
MULTI_SCAN_STEP_BYTES = 1024  # compressed bytes per decoder call for JPEGs with several scans
# A marker: 0xFF followed by anything but a stuffed zero, a restart marker or another fill byte.
_JPEG_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
_SOS, _EOI = 0xDA, 0xD9
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})  # markers without a length field
TRANSPOSED = (5, 6, 7, 8)  # EXIF orientations that swap width and height


def is_transposed(image: Image.Image) -> bool:
    return image.getexif().get(ExifTags.Base.Orientation, 1) in TRANSPOSED


def upright_size(image: Image.Image) -> tuple[int, int]:
    """(width, height) as people see the image, from the header alone (nothing decoded yet)."""
    return image.size[::-1] if is_transposed(image) else image.size


def decode_upright(image: Image.Image, min_size: tuple[int, int] | None) -> tuple[Image.Image, float]:
    """An opened image -> (RGB upright, its scale relative to ``upright_size``).

    With ``min_size`` (upright width, height) a JPEG not yet loaded decodes at the smallest DCT scale
    (PIL's draft mode) keeping both sides >= it: several times faster on large photos, and visually
    equivalent after the final resize. The scale is exact (1/2, 1/4, 1/8: libjpeg's pixel grid), so boxes
    chosen on the full size map onto the reduced image by multiplying."""
    scale = 1.0
    if min_size and image.format == "JPEG":
        stored = image.size
        drafted = image.draft("RGB", min_size[::-1] if is_transposed(image) else min_size)
        if drafted:
            scale = drafted[1][2] / stored[0]
    rgb = image.convert("RGB")
    ImageOps.exif_transpose(rgb, in_place=True)
    return rgb, scale


def jpeg_scan_count(data: bytes) -> int:
    """The number of scans (SOS markers) up to the first EOI, walking segment lengths so that markers
    inside metadata (an EXIF thumbnail is a JPEG of its own) or after the image are not counted."""
    scans, position = 0, 2
    while True:
        found = _JPEG_MARKER.search(data, position)
        if found is None:
            return scans
        marker, start = data[found.start() + 1], found.start() + 2
        if marker == _EOI:
            return scans
        if marker in _STANDALONE:
            position = start
            continue
        if start + 2 > len(data):
            return scans
        position = start + int.from_bytes(data[start : start + 2], "big")
        if marker == _SOS:  # the entropy-coded data after the header holds no markers: search goes on
            scans += 1


class _PacedBytes(io.BytesIO):
    """The image bytes, with the budget asked before every read, and reads capped to ``step`` bytes once
    ``pace(step)`` was called. Header parsing reads uncapped: plugins expect full reads there."""

    def __init__(self, data: bytes, budget: Budget):
        super().__init__(data)
        self._budget = budget
        self._step: int | None = None

    def pace(self, step: int) -> None:
        self._step = step

    def read(self, size: int | None = -1) -> bytes:
        self._budget.check(
            "decoding the image",
            advice="; send a smaller image, or a baseline (non-progressive) JPEG or a PNG",
        )
        if self._step is not None and (size is None or size < 0 or size > self._step):
            size = self._step
        return super().read(size)


def decode_image(data: bytes, model: Model, budget: Budget | None = None) -> Image.Image:
    """Bytes -> upright RGB image, or RequestError (4xx) saying what to change."""
    settings = model.settings
    budget = budget or Budget(settings.request_timeout_s)
    scans = jpeg_scan_count(data) if data[:2] == b"\xff\xd8" else 0
    if scans > settings.max_jpeg_scans:
        raise RequestError(
            422,
            f"the JPEG has {scans} scans; the limit is {settings.max_jpeg_scans} (cameras write about 10): "
            "re-encode it as a baseline JPEG or a PNG",
        )
    source = _PacedBytes(data, budget)
    try:
        with Image.open(source, formats=IMAGE_FORMATS) as img:
            width, height = img.size
            if width * height > settings.max_image_pixels:
                raise RequestError(
                    413,
                    f"image is {width}x{height} pixels ({width * height / 1e6:.1f} MP); the limit is "
                    f"{settings.max_image_pixels / 1e6:.1f} MP: downscale it before sending",
                )
            if scans > 1:
                source.pace(MULTI_SCAN_STEP_BYTES)
            side = model.metadata["preprocessing"]["resize"]
            rgb = decode_upright(img, (side, side))[0]
    except RequestError:
        raise
    except Image.DecompressionBombError as err:
        raise RequestError(
            413, f"image refused as a decompression bomb ({err}); downscale it before sending"
        ) from None
    except UnidentifiedImageError:
        raise RequestError(
            400,
            f"body is not a decodable image; send JPEG, PNG, WebP, BMP or GIF bytes ({len(data)} bytes received)",
        ) from None
    except (OSError, SyntaxError, ValueError) as err:
        raise RequestError(400, f"image could not be decoded (truncated or corrupt?): {err}") from None
    return rgb
