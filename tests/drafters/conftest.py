"""Tiny random-weight VLMs and a hand-set CLIP, built once per test session and saved like real checkpoints."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import tiny_models  # noqa: E402 - needs the folder on sys.path whatever pytest's import mode

from caption_agent.schemas import ImageInfo  # noqa: E402


@pytest.fixture(scope="session")
def tiny_models_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("tiny_models")


@pytest.fixture(scope="session")
def tiny_blip(tiny_models_dir) -> Path:
    return tiny_models.build_tiny_blip(tiny_models_dir / "blip")


@pytest.fixture(scope="session")
def tiny_llava(tiny_models_dir) -> Path:
    return tiny_models.build_tiny_llava(tiny_models_dir / "llava")


@pytest.fixture(scope="session")
def color_clip(tiny_models_dir) -> Path:
    return tiny_models.build_color_clip(tiny_models_dir / "clip")


@pytest.fixture(scope="session")
def tiny_text_model(tiny_models_dir) -> Path:
    return tiny_models.build_tiny_text_model(tiny_models_dir / "gpt2")


@pytest.fixture(scope="session")
def blip_drafter(tiny_blip):
    from caption_agent.config import TransformersDrafterSettings
    from caption_agent.drafters.hf import TransformersDrafter

    return TransformersDrafter(TransformersDrafterSettings(model=str(tiny_blip), max_new_tokens=8))


@pytest.fixture(scope="session")
def color_images():
    """Solid-colour photos-to-be (different sizes, so that resizing paths run)."""
    from PIL import Image

    return {
        "red": Image.new("RGB", (64, 48), (220, 30, 30)),
        "blue": Image.new("RGB", (40, 72), (25, 35, 230)),
        "green": Image.new("RGB", (50, 50), (30, 200, 40)),
    }


@pytest.fixture(scope="session")
def make_infos():
    def infos_for(images) -> list[ImageInfo]:
        return [
            ImageInfo(source=f"img{i}", sha256=f"{i:064d}", width=im.width, height=im.height)
            for i, im in enumerate(images)
        ]

    return infos_for
