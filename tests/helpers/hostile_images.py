"""Images that are cheap to send and expensive to decode, generated for the serving tests.

Pillow writes progressive JPEGs with libjpeg's standard script (about 10 scans). A decoder makes one
pass over every block of the image per scan, and libjpeg accepts a scan repeated any number of times
(it only warns), so repeating a scan whose data is a few bytes (an AC band of a flat image: all
end-of-band runs) makes a small file that costs seconds to minutes of CPU.
"""

from __future__ import annotations

import io
import struct
import zlib

from PIL import Image


def _scans(data: bytes) -> list[tuple[int, int]]:
    """(start, end) of each scan: its SOS segment and the entropy-coded data after it."""
    scans, position = [], 2
    while data[position + 1] != 0xD9:  # EOI
        marker = data[position + 1]
        end = position + 2 + struct.unpack(">H", data[position + 2 : position + 4])[0]
        if marker == 0xDA:
            while not (data[end] == 0xFF and data[end + 1] != 0 and not 0xD0 <= data[end + 1] <= 0xD7):
                end += 1
            scans.append((position, end))
        position = end
    return scans


def many_scan_jpeg(side: int, scans: int) -> bytes:
    """A valid progressive JPEG of ``side`` x ``side`` pixels with ``scans`` extra copies of one AC scan."""
    buffer = io.BytesIO()
    Image.new("RGB", (side, side), (120, 130, 140)).save(buffer, "JPEG", progressive=True, quality=90)
    data = buffer.getvalue()
    ac_scans = [
        (s, e) for s, e in _scans(data) if data[s + 4] == 1 and data[s + 7] > 0
    ]  # one component, Ss > 0
    start, end = ac_scans[-1]
    eoi = data.rindex(b"\xff\xd9")
    return data[:eoi] + data[start:end] * scans + data[eoi:]


def png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG that claims a huge size: a decompression bomb must be refused from the header alone."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
