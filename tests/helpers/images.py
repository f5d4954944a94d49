"""Small real images for request bodies, and base64 as JSON bodies and Lambda events carry them."""

from __future__ import annotations

import base64
import io

from PIL import Image


def jpeg_bytes(size: tuple[int, int] = (32, 32), colour: tuple[int, int, int] = (200, 120, 40)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="JPEG")
    return buffer.getvalue()


def distinct_jpegs(count: int) -> list[bytes]:
    """Distinct JPEGs (different colours and patterns), so a mixed-up answer would show."""
    out = []
    for i in range(count):
        img = Image.new("RGB", (80, 60), ((37 * i) % 256, (91 * i) % 256, (53 * i + 100) % 256))
        img.paste((255 - 20 * i % 256, 0, 0), (5 * i % 40, 10, 5 * i % 40 + 30, 40))
        buffer = io.BytesIO()
        img.save(buffer, "JPEG", quality=90)
        out.append(buffer.getvalue())
    return out


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
