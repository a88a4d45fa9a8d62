import io

import pytest
from PIL import Image

from caption_agent.config import ImageLimits
from caption_agent.errors import ImageTooLargeError, InvalidImageError
from caption_agent.images import load_image


def _png(size=(32, 24), mode="RGB", color=(10, 200, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, color).save(buf, format="PNG")
    return buf.getvalue()


def test_loads_real_photo_with_hash(images_dir):
    img, info = load_image(images_dir / "coffee.jpg")
    assert img.mode == "RGB" and (info.width, info.height) == img.size == (600, 400)
    assert len(info.sha256) == 64 and info.format == "JPEG"
    _, again = load_image((images_dir / "coffee.jpg").read_bytes())
    assert again.sha256 == info.sha256 and again.source == "<bytes>"


@pytest.mark.parametrize(
    "data, needle", [(b"", "empty"), (b"not an image at all", "not an image"), (_png()[:60], "corrupt or truncated")]
)
def test_bad_bytes_are_named(data, needle):
    with pytest.raises(InvalidImageError) as err:
        load_image(data)
    assert needle in str(err.value) and "Fix:" in str(err.value)


def test_missing_file_names_path(tmp_path):
    with pytest.raises(InvalidImageError, match="does not exist"):
        load_image(tmp_path / "nope.jpg")


def test_pixel_limit_checked_before_decoding():
    with pytest.raises(ImageTooLargeError, match="over the limit"):
        load_image(_png((400, 300)), ImageLimits(max_pixels=100_000))


def test_byte_limit(tmp_path):
    path = tmp_path / "a.png"
    path.write_bytes(_png((64, 64)))
    with pytest.raises(ImageTooLargeError, match="bytes"):
        load_image(path, ImageLimits(max_bytes=10))


def test_rgba_and_palette_become_rgb():
    img, _ = load_image(_png(mode="RGBA", color=(1, 2, 3, 128)))
    assert img.mode == "RGB"
    img, _ = load_image(_png(mode="P", color=3))
    assert img.mode == "RGB"


def test_exif_orientation_applied():
    buf = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° on display
    Image.new("RGB", (40, 20), (200, 0, 0)).save(buf, format="JPEG", exif=exif)
    img, info = load_image(buf.getvalue())
    assert img.size == (20, 40) and (info.width, info.height) == (20, 40)
