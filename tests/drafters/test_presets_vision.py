"""The VLM presets whose processors need torchvision (Qwen2.5-VL, Qwen3-VL, LLaVA-OneVision, SmolVLM2), on tiny
random models loaded by preset name. torchvision imports only beside a torch built with it (FACTS.md), so these
run in their own venv: ``scripts/vision_venv.sh test`` (CI runs it); in the main venv they skip.
"""

from __future__ import annotations

import pytest
from preset_models import build_preset_cache, check_preset_drafts, preset_names

from caption_agent.drafters.presets import load_presets

VISION = preset_names(torchvision=True)


def _torchvision_imports() -> bool:
    try:
        import torchvision  # noqa: F401
    except Exception:  # noqa: BLE001 - a CUDA build beside CPU torch raises RuntimeError, not ImportError
        return False
    return True


pytestmark = pytest.mark.skipif(
    not _torchvision_imports(), reason="torchvision does not import here: run scripts/vision_venv.sh test"
)


@pytest.fixture(scope="session")
def vision_cache(tmp_path_factory):
    return build_preset_cache(tmp_path_factory.mktemp("preset_models_vision"), torchvision=True)


def test_the_torchvision_families_are_covered():
    assert {load_presets()[n].family for n in VISION} == {"qwen2.5-vl", "qwen3-vl", "llava-onevision", "smolvlm2"}


@pytest.mark.parametrize("name", VISION)
def test_preset_loads_and_drafts(name, vision_cache, color_images, make_infos):
    images = [color_images["red"], color_images["blue"]]
    check_preset_drafts(name, vision_cache, images, make_infos(images))


def test_qwen_pixel_budget_reaches_the_processor(vision_cache):
    """qwen2.5-vl's min_pixels (256*28*28) upsizes a small photo to at least 256 visual tokens (1024 patches)."""
    from PIL import Image

    from caption_agent.config import TransformersDrafterSettings
    from caption_agent.drafters.hf import TransformersDrafter

    drafter = TransformersDrafter(TransformersDrafterSettings(model="qwen2.5-vl-3b", cache_dir=str(vision_cache)))
    image = Image.new("RGB", (96, 64), (180, 120, 40))
    grid = drafter._inputs([image])["image_grid_thw"][0].tolist()
    assert grid[1] * grid[2] >= 1024
    drafter._processor_kwargs = {}
    small = drafter._inputs([image])["image_grid_thw"][0].tolist()
    assert small[1] * small[2] < 1024
