"""Load untrusted images safely: size and pixel limits, EXIF orientation, RGB, content hash."""

from __future__ import annotations

import hashlib
import io
import warnings
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from agent.config import ImageLimits
from agent.errors import ImageTooLargeError, InvalidImageError
from agent.schemas import ImageInfo

ALLOWED_FORMATS = {"JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "MPO"}


def read_image_bytes(image: Path | str | bytes, limits: ImageLimits) -> tuple[bytes, str]:
    """Return the raw bytes and a label for error messages, enforcing the byte limit."""
    if isinstance(image, bytes):
        data, label = image, "<bytes>"
    else:
        path = Path(image)
        label = str(path)
        if not path.exists():
            raise InvalidImageError(f"image {label!r} does not exist.")
        if not path.is_file():
            raise InvalidImageError(f"image {label!r} is not a file.")
        size = path.stat().st_size
        if size > limits.max_bytes:
            raise ImageTooLargeError(f"image {label!r} is {size} bytes, over the limit of {limits.max_bytes}.")
        data = path.read_bytes()
    if not data:
        raise InvalidImageError(f"image {label!r} is empty (0 bytes).")
    if len(data) > limits.max_bytes:
        raise ImageTooLargeError(f"image {label!r} is {len(data)} bytes, over the limit of {limits.max_bytes}.")
    return data, label


def load_image(image: Path | str | bytes, limits: ImageLimits | None = None) -> tuple[Image.Image, ImageInfo]:
    """Decode ``image`` into an RGB PIL image with EXIF orientation applied.

    The pixel limit is checked from the header, before the pixels are decoded.
    """
    limits = limits or ImageLimits()
    data, label = read_image_bytes(image, limits)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            fmt = img.format
            if fmt not in ALLOWED_FORMATS:
                raise InvalidImageError(f"image {label!r} has unsupported format {fmt!r}.")
            width, height = img.size
            if width * height > limits.max_pixels:
                raise ImageTooLargeError(
                    f"image {label!r} is {width}x{height} = {width * height} pixels, "
                    f"over the limit of {limits.max_pixels}.")
            if min(width, height) < limits.min_side:
                raise InvalidImageError(f"image {label!r} is {width}x{height}, smaller than {limits.min_side}px.")
            img.load()
            img = ImageOps.exif_transpose(img)
    except (ImageTooLargeError, InvalidImageError):
        raise
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise ImageTooLargeError(f"image {label!r} looks like a decompression bomb: {exc}.") from exc
    except UnidentifiedImageError as exc:
        raise InvalidImageError(f"{label!r} is not an image file Pillow can read.") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise InvalidImageError(f"image {label!r} is corrupt or truncated: {exc}.") from exc
    if img.mode != "RGB":
        img = img.convert("RGBA").convert("RGB") if "A" in img.getbands() or img.mode == "P" else img.convert("RGB")
    info = ImageInfo(source=label, sha256=hashlib.sha256(data).hexdigest(), width=img.width,
                     height=img.height, format=fmt)
    return img, info
