"""Load untrusted images safely into one bounded working copy that every stage uses.

Checked from the header, before any pixel is decoded: byte size, pixel count, smallest side and aspect ratio;
for a JPEG or a PNG, its structure is walked first (no decoding) to bound the work a decoder would do: the number of
JPEG scans (a progressive JPEG can repeat one scan thousands of times, each a full pass over the coefficients), the
bytes of metadata (Pillow joins EXIF segments by repeated concatenation, quadratic in their number), and the number
of marker segments or chunks (parsed in Python one by one).
Then the image is decoded once (JPEG at a reduced DCT scale when it is much larger than needed), shrunk so that
its longest side is at most ``images.working_side``, turned upright (EXIF orientation) and converted to RGB.
Screening, face detection, drafting, OCR, CLIP and uploads to a VLM server all work on that copy, so no stage
allocates more than a fixed working size whatever the input's shape; ``ImageInfo`` keeps the original size.
"""

from __future__ import annotations

import hashlib
import io
import math
import re
import warnings
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from caption_agent.config import ImageLimits
from caption_agent.errors import ImageCostError, ImageShapeError, ImageTooLargeError, InvalidImageError
from caption_agent.schemas import ImageInfo

ALLOWED_FORMATS = {"JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "MPO"}
# Modes that Pillow resizes with a real filter; others (palette, 1-bit, 16/32-bit) are converted first.
_RESIZABLE = {"RGB", "RGBA", "L", "LA", "CMYK", "YCbCr", "RGBX"}
# EXIF orientation -> the transpose that makes the image upright (what ImageOps.exif_transpose does).
_ORIENT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def read_image_bytes(image: Path | str | bytes, limits: ImageLimits) -> tuple[bytes, str]:
    """Return the raw bytes and a label for error messages, enforcing the byte limit."""
    if isinstance(image, bytes):
        data, label = image, "<bytes>"
    else:
        path = Path(image)
        label = str(path).encode("utf-8", "backslashreplace").decode("utf-8")  # a non-UTF-8 name, printable
        if not path.exists():
            raise InvalidImageError(f"image {label!r} does not exist.")
        if not path.is_file():  # a FIFO or a device is never opened: reading one may wait forever
            raise InvalidImageError(f"image {label!r} is not a regular file.")
        size = path.stat().st_size
        if size > limits.max_bytes:
            raise ImageTooLargeError(f"image {label!r} is {size} bytes, over the limit of {limits.max_bytes}.")
        try:
            with path.open("rb") as fh:  # bounded: files under /proc report 0 bytes and may hold more
                data = fh.read(limits.max_bytes + 1)
        except OSError as exc:
            raise InvalidImageError(
                f"image {label!r} cannot be read: {exc.strerror or type(exc).__name__}.",
                fix="check the file's permissions and that it is an ordinary image file.",
            ) from None
    if not data:
        raise InvalidImageError(f"image {label!r} is empty (0 bytes).")
    if len(data) > limits.max_bytes:
        raise ImageTooLargeError(f"image {label!r} is {len(data)} bytes, over the limit of {limits.max_bytes}.")
    return data, label


# After a scan header, the entropy-coded data runs to the next marker: 0xFF followed by neither a stuffed 0x00,
# a restart marker (0xD0-0xD7) nor another 0xFF (fill bytes before a marker).
_NEXT_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
# Markers without a length field: restarts, SOI, EOI, TEM.
_BARE = frozenset({*range(0xD0, 0xD8), 0xD8, 0xD9, 0x01})
# Marker segments (not scans) a JPEG may carry, and PNG chunks a small PNG may carry: a real file has a few dozen
# (ICC profiles split over up to 255 APP2 segments; PNG image data in chunks of 8 KB or more, so a large PNG may
# have one chunk per KB of file). Pillow parses headers and chunks in Python, one step per segment: a million tiny
# ones cost seconds (1M PNG chunks, 12 MB: 9 s; 1M JPEG comments, 5 MB: 4.6 s).
MAX_SEGMENTS = 2048
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_METADATA = frozenset({b"tEXt", b"zTXt", b"iTXt", b"iCCP", b"eXIf"})
_REENCODE = "re-encode the image (e.g. save it again from an image editor)."


def check_decode_cost(label: str, data: bytes, limits: ImageLimits) -> None:
    """Refuse, from the file's structure alone, an image whose decoding costs far more than its size suggests."""
    check_jpeg_cost(label, data, limits)
    check_png_cost(label, data, limits)


def _metadata_error(label: str, kind: str, limits: ImageLimits) -> ImageCostError:
    return ImageCostError(
        f"image {label!r} carries over {limits.max_metadata_bytes} bytes of {kind} metadata (EXIF, XMP, ICC, text), "
        "over the limit `images.max_metadata_bytes`.",
        fix="strip the metadata (e.g. `exiftool -all= FILE`), or raise `images.max_metadata_bytes` in the config if "
        "you trust the source.",
    )


def check_png_cost(label: str, data: bytes, limits: ImageLimits) -> None:
    """Count a PNG's chunks (at most ``MAX_SEGMENTS``, or one per KB of file) and its metadata chunks' bytes."""
    if not data.startswith(_PNG_SIGNATURE):
        return
    most = max(MAX_SEGMENTS, len(data) // 1024)
    pos, chunks, metadata = len(_PNG_SIGNATURE), 0, 0
    while pos + 8 <= len(data):
        length, kind = int.from_bytes(data[pos : pos + 4], "big"), data[pos + 4 : pos + 8]
        chunks += 1
        if chunks > most:
            raise ImageCostError(f"image {label!r} has over {most} PNG chunks for its size.", fix=_REENCODE)
        if kind in _PNG_METADATA:
            metadata += length
            if metadata > limits.max_metadata_bytes:
                raise _metadata_error(label, "PNG", limits)
        if kind == b"IEND":
            return
        pos += 12 + length


def check_jpeg_cost(label: str, data: bytes, limits: ImageLimits) -> None:
    """Refuse a JPEG whose decoding would cost far more than its size suggests, from its markers alone.

    Counts the scans (SOS markers) and the APPn/COM metadata bytes; stops at the first EOI (an MPO's later
    images are not decoded). Bytes between segments are skipped to the next marker, as Pillow and libjpeg skip
    them (a junk byte must not end the count while the decoder reads on); a truncated stream is left to the
    decoder."""
    if not data.startswith(b"\xff\xd8"):
        return
    scans = metadata = segments = 0
    pos, end = 2, len(data)
    while pos + 1 < end:
        if data[pos] != 0xFF:
            found = _NEXT_MARKER.search(data, pos)
            if found is None:
                return
            pos = found.start()
            continue
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0xD9:
            return
        if marker in _BARE:
            pos += 2
            continue
        if pos + 4 > end:
            return
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        segments += 1
        if segments > MAX_SEGMENTS:
            raise ImageCostError(
                f"image {label!r} has over {MAX_SEGMENTS} JPEG marker segments; a photo has a few dozen.", fix=_REENCODE
            )
        if 0xE0 <= marker <= 0xEF or marker == 0xFE:
            metadata += max(0, length - 2)
            if metadata > limits.max_metadata_bytes:
                raise _metadata_error(label, "JPEG", limits)
        pos += 2 + length
        if marker == 0xDA:
            scans += 1
            if scans > limits.max_jpeg_scans:
                raise ImageCostError(
                    f"image {label!r} is a JPEG of over {limits.max_jpeg_scans} scans, over the limit "
                    f"`images.max_jpeg_scans` (a progressive photo has about 10); each scan is a full decoding pass.",
                    fix="re-encode the image as a baseline JPEG (or a standard progressive one), or raise "
                    "`images.max_jpeg_scans` in the config if you trust the source.",
                )
            found = _NEXT_MARKER.search(data, pos)
            if found is None:
                return
            pos = found.start()


def check_shape(label: str, width: int, height: int, limits: ImageLimits) -> None:
    """Refuse, from the header alone, sizes and shapes no stage should ever decode or process."""
    if width * height > limits.max_pixels:
        raise ImageTooLargeError(
            f"image {label!r} is {width}x{height} = {width * height} pixels, over the limit of {limits.max_pixels}."
        )
    ratio = max(width, height) / max(1, min(width, height))
    if ratio > limits.max_aspect_ratio:
        raise ImageShapeError(
            f"image {label!r} is {width}x{height}, an aspect ratio of {ratio:.0f}:1, beyond the "
            f"limit of {limits.max_aspect_ratio:g}:1."
        )
    if min(width, height) < limits.min_side:
        raise InvalidImageError(f"image {label!r} is {width}x{height}, smaller than {limits.min_side}px.")


def working_size(width: int, height: int, side: int) -> tuple[int, int]:
    """Size of the working copy: longest side at most ``side``, aspect kept, never upscaled, at least 1 px."""
    scale = min(1.0, side / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def _shrink(img: Image.Image, side: int) -> Image.Image:
    """Decode ``img`` and reduce it to the working size, never holding more than one full-size decode."""
    target = working_size(*img.size, side)
    if img.format in ("JPEG", "MPO") and target != img.size:  # phone JPEGs with an MPF segment read as MPO
        # Decode at the smallest DCT scale (1/2, 1/4, 1/8) still at least twice the target: a 24 MP photo
        # never exists at full size in memory.
        img.draft("RGB", (math.ceil(target[0] * 2), math.ceil(target[1] * 2)))
    img.load()
    if img.mode in ("I;16", "I;16L", "I;16B", "I", "F"):
        img = _to_8bit(img)
    if img.mode not in _RESIZABLE:
        has_alpha = "A" in img.getbands() or "transparency" in img.info
        img = img.convert("RGBA" if has_alpha else "RGB")
    if img.size != target:
        img = img.resize(target, Image.Resampling.BICUBIC, reducing_gap=2.0)
    return img


def _to_8bit(img: Image.Image) -> Image.Image:
    """16-bit and 32-bit greyscale scaled to 8 bits (a plain convert clips everything above 255 to white)."""
    import numpy as np

    arr = np.asarray(img).astype(np.float32)
    top = float(arr.max()) if arr.size else 0.0
    scale = 255.0 / (65535.0 if 255 < top <= 65535 and img.mode != "F" else max(top, 1e-6)) if top > 255 else 1.0
    if img.mode == "F" and 0 < top <= 1.0:  # float images in [0, 1]
        scale = 255.0
    return Image.fromarray(np.clip(arr * scale, 0, 255).astype(np.uint8), "L")


def load_image(image: Path | str | bytes, limits: ImageLimits | None = None) -> tuple[Image.Image, ImageInfo]:
    """Decode ``image`` into its RGB working copy (EXIF orientation applied, longest side <= working_side).

    Limits are checked from the header, before the pixels are decoded. ``ImageInfo`` has the original size.
    """
    limits = limits or ImageLimits()
    data, label = read_image_bytes(image, limits)
    check_decode_cost(label, data, limits)
    try:
        with warnings.catch_warnings():
            # `images.max_pixels` is the limit (checked below, from the header); it may be above Pillow's warning
            # level, and is always below the level of its DecompressionBombError.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            src = Image.open(io.BytesIO(data))
            fmt = src.format
            if fmt not in ALLOWED_FORMATS:
                raise InvalidImageError(f"image {label!r} has unsupported format {fmt!r}.")
            width, height = src.size
            check_shape(label, width, height, limits)
            orientation = src.getexif().get(0x0112)
            img = _shrink(src, limits.working_side)
            if orientation in _ORIENT:
                img = img.transpose(_ORIENT[orientation])
                if orientation in (5, 6, 7, 8):
                    width, height = height, width
            img.info.pop("exif", None)  # upright now: a later exif_transpose must not turn it again
    except (ImageTooLargeError, InvalidImageError):
        raise
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise ImageTooLargeError(f"image {label!r} looks like a decompression bomb: {exc}.") from exc
    except UnidentifiedImageError as exc:
        raise InvalidImageError(f"{label!r} is not an image file Pillow can read.") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise InvalidImageError(f"image {label!r} is corrupt or truncated: {exc}.") from exc
    if img.mode != "RGB":
        img = img.convert("RGB")
    info = ImageInfo(
        source=label,
        sha256=hashlib.sha256(data).hexdigest(),
        width=width,
        height=height,
        format=fmt,
        working_width=img.width,
        working_height=img.height,
    )
    return img, info
