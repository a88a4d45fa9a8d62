"""Every stage works on one bounded working copy; extreme shapes are refused from the header, with the fix."""

import io
import time

import numpy as np
import pytest
from PIL import Image

from caption_agent.config import AgentConfig, ImageLimits
from caption_agent.errors import ConfigError, ImageShapeError, InvalidImageError
from caption_agent.images import load_image, working_size


def _png(size, mode="RGB", color=(10, 200, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, color).save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize("size", [(60000, 2), (2, 60000), (40000, 8), (3000, 100)])
def test_extreme_aspect_ratio_is_refused_from_the_header(size):
    data = _png(size)
    assert len(data) < 20_000  # a few KB on disk
    t0 = time.perf_counter()
    with pytest.raises(ImageShapeError) as err:
        load_image(data)
    assert time.perf_counter() - t0 < 1.0
    message = str(err.value)
    assert f"{size[0]}x{size[1]}" in message and "20:1" in message
    assert "Fix:" in message and "max_aspect_ratio" in message
    assert isinstance(err.value, InvalidImageError)  # same status everywhere as other bad images


@pytest.mark.parametrize("size", [(20000, 1000), (1000, 20000), (4000, 3000), (300, 200)])
def test_accepted_images_become_a_bounded_working_copy(size):
    img, info = load_image(_png(size))
    assert (info.width, info.height) == size
    assert max(img.size) <= 1024 and img.size == (info.working_width, info.working_height)
    assert img.size == working_size(*size, 1024) and img.mode == "RGB"
    assert abs(img.width / img.height - size[0] / size[1]) / (size[0] / size[1]) < 0.05


def test_working_side_and_aspect_limit_are_settings():
    img, _ = load_image(_png((3000, 100)), ImageLimits(working_side=512, max_aspect_ratio=40))
    assert img.size == (512, 17)
    with pytest.raises(ConfigError, match="images.working_side"):
        AgentConfig.load(drafter={"image_max_side": 512})


def test_large_jpeg_is_decoded_at_reduced_scale_with_orientation():
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 255, (3000, 4000, 3), dtype=np.uint8)
    arr[:, :2000] = (200, 20, 20)  # left half red: after rotation by 90° (orientation 6) it is the top half
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "JPEG", exif=exif, quality=80)
    img, info = load_image(buf.getvalue())
    assert (info.width, info.height) == (3000, 4000)  # upright original size
    assert img.size == (768, 1024)
    top, bottom = np.asarray(img)[:400].mean(axis=(0, 1)), np.asarray(img)[-400:].mean(axis=(0, 1))
    assert top[0] > 150 and top[1] < 80 and bottom[1] > 80


@pytest.mark.parametrize("mode, color", [("P", 3), ("LA", (3, 200)), ("I;16", 3000), ("1", 1), ("RGBA", (1, 2, 3, 0))])
def test_every_mode_becomes_an_rgb_working_copy(mode, color):
    img, _ = load_image(_png((2500, 500), mode, color))
    assert img.mode == "RGB" and img.size == (1024, 205)


def test_lite_preprocessing_is_224_squared_whatever_the_shape(lite_drafter):
    # Even with the aspect limit lifted, the drafter never scales a strip up to the short side's 256 px.
    img, _ = load_image(_png((20000, 2)), ImageLimits(max_aspect_ratio=10_000, min_side=1))
    assert img.size == (1024, 1)
    t0 = time.perf_counter()
    arr = lite_drafter._preprocess(img)
    assert arr.shape == (3, 224, 224) and time.perf_counter() - t0 < 1.0


def test_sixteen_bit_images_are_scaled_not_clipped():
    ramp = np.linspace(0, 65535, 2000 * 100).reshape(100, 2000).astype(np.uint16)
    buf = io.BytesIO()
    Image.fromarray(ramp).save(buf, "PNG")
    img, _ = load_image(buf.getvalue())
    arr = np.asarray(img)
    assert 110 < arr.mean() < 145 and (arr == 255).mean() < 0.05  # a grey ramp, not a white page
