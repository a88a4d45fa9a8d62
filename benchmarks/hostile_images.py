"""Hostile JPEGs that are small on disk and expensive to decode, built from a real encoder's output.

Shared by benchmarks/bench_hostile_images.py and tests/agent/test_image_cost.py.

- ``repeated_scan_jpeg``: a progressive JPEG whose one AC scan is repeated ``repeats`` times. Each copy is a
  few bytes (all end-of-band runs on a flat image) but makes the decoder walk every block of the image again.
- ``exif_flood_jpeg``: a baseline JPEG carrying ``mb`` MB of EXIF split over 64 KB APP1 segments (the
  largest a segment can be); Pillow joins them by repeated concatenation.
- ``comment_flood_jpeg`` / ``chunk_flood_png``: a million tiny JPEG segments / PNG chunks, each parsed by
  Pillow's Python header code one at a time.
"""

from __future__ import annotations

import io
from typing import Iterator

_BARE = {*range(0xD0, 0xD8), 0xD8, 0xD9, 0x01}


def _segments(data: bytes) -> Iterator[tuple[int, int, int]]:
    """(marker, start, end) of every marker segment up to EOI; a scan's end includes its entropy-coded data."""
    pos = 2
    while pos < len(data):
        assert data[pos] == 0xFF, f"not a marker at {pos}"
        marker = data[pos + 1]
        if marker == 0xD9:
            return
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        end = pos + 2 + length
        if marker == 0xDA:
            while not (data[end] == 0xFF and data[end + 1] not in (0x00, *range(0xD0, 0xD8))):
                end += 1
        yield marker, pos, end
        pos = end


def _encode(side: int, **save: object) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (side, side), (120, 130, 140)).save(buf, "JPEG", quality=90, **save)
    return buf.getvalue()


def repeated_scan_jpeg(side: int = 2048, repeats: int = 5000) -> bytes:
    """A ``side``-square progressive JPEG whose last scan (with its tables) comes ``repeats`` times."""
    data = _encode(side, progressive=True)
    segments = list(_segments(data))
    last = max(i for i, (marker, _, _) in enumerate(segments) if marker == 0xDA)
    # The scan and the Huffman tables defined right before it, so every copy decodes as the original did.
    first = last
    while first > 0 and segments[first - 1][0] == 0xC4:
        first -= 1
    start, end = segments[first][1], segments[last][2]
    return data[:start] + data[start:end] * repeats + data[end:]


def exif_flood_jpeg(mb: float = 39.0, side: int = 64) -> bytes:
    """A small baseline JPEG with ``mb`` MB of EXIF in APP1 segments of 65,533 bytes each."""
    data = _encode(side)
    payload = b"Exif\x00\x00" + b"\x00" * (65533 - 6)
    segment = b"\xff\xe1" + (65535).to_bytes(2, "big") + payload
    count = max(1, round(mb * 1e6 / len(segment)))
    return data[:2] + segment * count + data[2:]


def comment_flood_jpeg(count: int = 1_000_000) -> bytes:
    """A small baseline JPEG with ``count`` one-byte comment (COM) segments: 5 bytes each."""
    data = _encode(64)
    return data[:2] + b"\xff\xfe\x00\x03x" * count + data[2:]


def chunk_flood_png(count: int = 1_000_000) -> bytes:
    """A 64x64 PNG with ``count`` empty private ancillary chunks (12 bytes each) before its image data."""
    import struct
    import zlib

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (120, 130, 140)).save(buf, "PNG")
    data = buf.getvalue()
    chunk = struct.pack(">I", 0) + b"abCd" + struct.pack(">I", zlib.crc32(b"abCd"))
    return data[:33] + chunk * count + data[33:]  # after the signature and IHDR
