"""Dominant colours of an image, named with a small fixed vocabulary."""

from __future__ import annotations

import numpy as np
from PIL import Image

# Basic colour terms (Berlin & Kay) plus a few shop words, as sRGB anchors.
NAMED_COLORS: dict[str, tuple[int, int, int]] = {
    "black": (20, 20, 20),
    "white": (245, 245, 245),
    "grey": (128, 128, 128),
    "light grey": (200, 200, 200),
    "dark grey": (70, 70, 70),
    "red": (200, 30, 30),
    "dark red": (120, 20, 25),
    "pink": (240, 150, 180),
    "orange": (240, 140, 30),
    "yellow": (240, 220, 40),
    "beige": (220, 200, 160),
    "brown": (120, 75, 40),
    "dark brown": (70, 45, 25),
    "green": (50, 150, 50),
    "dark green": (25, 80, 35),
    "olive": (128, 128, 40),
    "blue": (40, 80, 200),
    "light blue": (140, 190, 235),
    "navy": (25, 35, 90),
    "teal": (30, 130, 130),
    "purple": (120, 50, 150),
}
_NAMES = list(NAMED_COLORS)


def _to_lab(rgb: np.ndarray) -> np.ndarray:
    """sRGB (0-255) -> CIE Lab, so nearest-colour matching follows perceived distance."""
    c = rgb.astype(np.float64) / 255.0
    c = np.where(c > 0.04045, ((c + 0.055) / 1.055) ** 2.4, c / 12.92)
    m = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]])
    xyz = c @ m.T / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16 / 116)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], axis=-1)


_ANCHORS_LAB = _to_lab(np.array([NAMED_COLORS[n] for n in _NAMES]))


def dominant_colors(image: Image.Image, k: int = 3, min_share: float = 0.08) -> list[tuple[str, float]]:
    """Up to ``k`` colour names with their pixel share, strongest first (names are merged)."""
    rgb = image if image.mode == "RGB" else image.convert("RGB")  # convert() copies even an RGB image
    small = rgb.resize((64, 64), Image.Resampling.BILINEAR)
    pal_img = small.quantize(colors=8, method=Image.Quantize.MEDIANCUT)
    palette = np.array((pal_img.getpalette() or [])[: 8 * 3]).reshape(-1, 3)
    counts = np.bincount(np.asarray(pal_img).ravel(), minlength=8)[: len(palette)]
    dists = np.linalg.norm(_to_lab(palette)[:, None, :] - _ANCHORS_LAB[None, :, :], axis=-1)
    shares: dict[str, float] = {}
    total = counts.sum()
    for idx, count in enumerate(counts):
        if count:
            name = _NAMES[int(dists[idx].argmin())]
            shares[name] = shares.get(name, 0.0) + count / total
    ranked = sorted(shares.items(), key=lambda kv: -kv[1])
    return [(name, round(share, 3)) for name, share in ranked if share >= min_share][:k]
