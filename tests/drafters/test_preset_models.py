"""Every VLM preset whose processor needs no torchvision, on a tiny random model of its own architecture, loaded by
preset name from a Hugging Face cache (snapshot lookup -> AutoProcessor -> AutoModelForImageTextToText -> draft).

The torchvision families (Qwen-VL, LLaVA-OneVision, SmolVLM2) run in test_presets_vision.py in the torchvision venv.
"""

from __future__ import annotations

import pytest
from preset_models import BUILDERS, build_preset_cache, check_preset_drafts, preset_names

from caption_agent.drafters.presets import load_presets

MAIN_VENV = preset_names(torchvision=False)


@pytest.fixture(scope="session")
def preset_cache(tmp_path_factory):
    """One tiny model per architecture, installed under every preset's hub id that uses it."""
    return build_preset_cache(tmp_path_factory.mktemp("preset_models"), torchvision=False)


def test_every_family_has_a_tiny_builder_and_ten_presets_run_here():
    assert {p.model_type for p in load_presets().values()} <= set(BUILDERS)
    assert len(MAIN_VENV) >= 10


@pytest.mark.parametrize("name", MAIN_VENV)
def test_preset_loads_and_drafts(name, preset_cache, color_images, make_infos):
    images = [color_images["red"], color_images["blue"]]
    check_preset_drafts(name, preset_cache, images, make_infos(images))


def test_style_prompt_decoding_defaults_and_explicit_settings(preset_cache):
    from caption_agent.config import TransformersDrafterSettings
    from caption_agent.drafters.hf import TransformersDrafter

    drafter = TransformersDrafter(
        TransformersDrafterSettings(model="florence-2-base", cache_dir=str(preset_cache), prompt_style="seo_product")
    )
    assert drafter.prompt == "<DETAILED_CAPTION>" and drafter.settings.max_new_tokens == 64  # the preset's default
    ids = drafter._inputs([drafter_image()])["input_ids"][0].tolist()
    assert "describe in detail" in drafter.tokenizer.decode(ids).lower()  # Florence's task token became its question
    own = TransformersDrafter(
        TransformersDrafterSettings(
            model="florence-2-base", cache_dir=str(preset_cache), prompt="<CAPTION>", max_new_tokens=12
        )
    )
    assert own.prompt == "<CAPTION>" and own.settings.max_new_tokens == 12  # what the config sets wins


def test_processor_limits_reach_the_processor(preset_cache):
    """idefics3-8b's longest_edge (1456 px) tiles a 3:2 image into 3x2 + 1 global tiles of 512 px; the tiny
    checkpoint's own default (1024 px) into 2x2 + 1."""
    from caption_agent.config import TransformersDrafterSettings
    from caption_agent.drafters.hf import TransformersDrafter

    drafter = TransformersDrafter(TransformersDrafterSettings(model="idefics3-8b", cache_dir=str(preset_cache)))
    assert drafter._processor_kwargs == {"size": {"longest_edge": 1456}}
    with_limits = drafter._inputs([drafter_image()])["pixel_values"].shape
    drafter._processor_kwargs = {}
    default = drafter._inputs([drafter_image()])["pixel_values"].shape
    assert with_limits[1] == 7 and default[1] == 5


def drafter_image():
    from PIL import Image

    return Image.new("RGB", (96, 64), (180, 120, 40))


def test_the_requests_style_picks_the_task_prompt_unless_the_config_fixes_one(preset_cache, color_images, make_infos):
    from caption_agent.config import TransformersDrafterSettings
    from caption_agent.drafters.hf import TransformersDrafter
    from caption_agent.drafters.presets import get_preset, task_prompt

    preset = get_preset("florence-2-base")
    drafter = TransformersDrafter(TransformersDrafterSettings(model="florence-2-base", cache_dir=str(preset_cache)))
    asked: list[str | None] = []
    real_inputs = drafter._inputs

    def recording_inputs(images, prompt=None):  # the real processor call, with the prompt it was given noted
        asked.append(prompt)
        return real_inputs(images, prompt)

    drafter._inputs = recording_inputs
    images = [color_images["red"]]
    for style in ("seo_product", "alt_text", "dataset_recaption", "no_such_style", None):
        assert drafter.draft(images, make_infos(images), 1, style=style)[0].candidates
    assert asked == ["<DETAILED_CAPTION>", "<CAPTION>", "<MORE_DETAILED_CAPTION>", "<CAPTION>", "<CAPTION>"]
    # What the config sets wins over the request's style: prompt_style, then an explicit prompt.
    fixed = TransformersDrafterSettings(model="florence-2-base", prompt_style="dataset_recaption")
    assert task_prompt(preset, fixed, "seo_product", "x") == "<MORE_DETAILED_CAPTION>"
    own = TransformersDrafterSettings(model="florence-2-base", prompt_style="seo_product", prompt="<OD>")
    assert task_prompt(preset, own, "alt_text", "x") == "<OD>"
    assert task_prompt(None, TransformersDrafterSettings(), "seo_product", "a photo of") == "a photo of"
