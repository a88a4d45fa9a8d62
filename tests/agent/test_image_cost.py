"""Decoding cost is bounded before decoding: JPEG scans, segments and metadata counted from the markers, PNG
chunks and metadata from the chunk headers; limits are capped; inputs that are not ordinary files (a FIFO,
/proc/self/mem) are refused as that input's own error."""

from __future__ import annotations

import io
import os
import struct
import sys
import time
import zlib
from pathlib import Path

import pytest
from PIL import Image
from pydantic import ValidationError

from caption_agent.config import ImageLimits
from caption_agent.errors import ImageCostError, InvalidImageError
from caption_agent.images import MAX_SEGMENTS, check_decode_cost, load_image

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from hostile_images import exif_flood_jpeg, repeated_scan_jpeg  # noqa: E402

PHOTO = Path(__file__).resolve().parents[2] / "examples" / "images" / "chelsea.jpg"


def _progressive_photo() -> bytes:
    buf = io.BytesIO()
    Image.open(PHOTO).save(buf, "JPEG", quality=90, progressive=True)
    return buf.getvalue()


def test_repeated_scans_are_refused_from_the_markers_before_decoding():
    data = repeated_scan_jpeg(side=512, repeats=400)
    t0 = time.perf_counter()
    with pytest.raises(ImageCostError) as err:
        load_image(data)
    assert time.perf_counter() - t0 < 1.0  # the walk reads markers only (decoding this file takes seconds)
    message = str(err.value)
    assert "images.max_jpeg_scans" in message and "over 100 scans" in message and "Fix:" in message


def test_junk_bytes_between_segments_do_not_end_the_count():
    """Pillow and libjpeg skip bytes between segments; the marker walk must too, or one junk byte after APP0
    hides every scan behind it while the decoder still decodes them all."""
    data = repeated_scan_jpeg(side=64, repeats=400)
    after_app0 = 4 + int.from_bytes(data[4:6], "big")
    with pytest.raises(ImageCostError, match="images.max_jpeg_scans"):
        load_image(data[:after_app0] + b"\x00junk" + data[after_app0:])


def test_a_raised_scan_limit_lets_the_same_file_decode():
    data = repeated_scan_jpeg(side=64, repeats=150)
    image, info = load_image(data, ImageLimits(max_jpeg_scans=1000))
    assert (info.width, info.height) == (64, 64) and image.mode == "RGB"


def test_ordinary_baseline_and_progressive_photos_pass():
    for data in (PHOTO.read_bytes(), _progressive_photo()):
        check_decode_cost("photo", data, ImageLimits())
        image, info = load_image(data)
        assert info.format == "JPEG" and image.size == (info.working_width, info.working_height)


def test_an_exif_flood_is_refused_by_its_size_and_real_exif_passes():
    flood = exif_flood_jpeg(mb=5)
    t0 = time.perf_counter()
    with pytest.raises(ImageCostError, match="images.max_metadata_bytes"):
        load_image(flood)
    assert time.perf_counter() - t0 < 1.0
    # Under a raised limit the same file is read (metadata is a cost, not an error).
    _, info = load_image(flood, ImageLimits(max_metadata_bytes=8 * 1024 * 1024))
    assert info.width == 64
    # A photo with real EXIF (orientation) is untouched by the check.
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    Image.open(PHOTO).save(buf, "JPEG", exif=exif)
    _, info = load_image(buf.getvalue())
    assert (info.width, info.height) == Image.open(PHOTO).size[::-1]


def test_a_stream_of_tiny_marker_segments_is_refused():
    data = PHOTO.read_bytes()
    comment = b"\xff\xfe\x00\x03x"  # a 1-byte COM segment
    hostile = data[:2] + comment * (MAX_SEGMENTS + 1) + data[2:]
    with pytest.raises(ImageCostError, match="marker segments"):
        load_image(hostile)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def test_png_chunk_floods_and_text_floods_are_refused_and_ordinary_pngs_pass():
    buf = io.BytesIO()
    Image.open(PHOTO).save(buf, "PNG")
    png = buf.getvalue()
    head, rest = png[:33], png[33:]  # signature + IHDR, then the rest
    tiny = head + _png_chunk(b"abCd", b"") * 200_000 + rest  # 2.4 MB of empty private chunks
    t0 = time.perf_counter()
    with pytest.raises(ImageCostError, match="PNG chunks"):
        load_image(tiny)
    assert time.perf_counter() - t0 < 1.0
    text = head + _png_chunk(b"tEXt", b"k\x00" + b"v" * 60_000) * 80 + rest  # 4.8 MB of text
    with pytest.raises(ImageCostError, match="images.max_metadata_bytes"):
        load_image(text)
    _, info = load_image(png)  # and one PNG with a few text chunks
    _, info2 = load_image(head + _png_chunk(b"tEXt", b"Title\x00A cat") * 3 + rest)
    assert info.format == info2.format == "PNG" and info.width == info2.width


def test_truncated_or_odd_jpeg_streams_are_left_to_the_decoder():
    data = PHOTO.read_bytes()
    for cut in (3, 5, 200, len(data) // 2):
        check_decode_cost("cut", data[:cut], ImageLimits())  # never raises, never loops
    with pytest.raises(InvalidImageError):
        load_image(data[:200])


def test_limits_have_upper_bounds():
    for field, value in (
        ("max_pixels", 10**9),
        ("max_bytes", 2 * 1024**3),
        ("max_jpeg_scans", 10**6),
        ("max_metadata_bytes", 10**9),
    ):
        with pytest.raises(ValidationError, match=field):
            ImageLimits(**{field: value})
    # Above Pillow's warning level (89 MP) and under the bound: the configured limit decides, not a warning.
    assert ImageLimits(max_pixels=150_000_000).max_pixels == 150_000_000


@pytest.mark.skipif(not Path("/proc/self/mem").exists(), reason="Linux /proc")
def test_a_file_that_fails_on_read_is_an_invalid_image_not_an_oserror():
    with pytest.raises(InvalidImageError, match="cannot be read"):
        load_image("/proc/self/mem")


def test_a_fifo_is_refused_without_being_opened(tmp_path):
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    t0 = time.perf_counter()
    with pytest.raises(InvalidImageError, match="not a regular file"):
        load_image(fifo)
    assert time.perf_counter() - t0 < 1.0  # opening a FIFO would block forever
