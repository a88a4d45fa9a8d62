"""The transformers drafter on tiny random-weight models loaded from disk like a user's checkpoint."""

from __future__ import annotations

import math

import pytest
import tiny_models
import torch

from caption_agent.config import TransformersDrafterSettings
from caption_agent.drafters.hf import CHAT_PROMPT, TransformersDrafter
from caption_agent.errors import BackendUnavailableError, ConfigError, UnsupportedModelError


def _settings(model, **kw) -> TransformersDrafterSettings:
    return TransformersDrafterSettings(model=str(model), max_new_tokens=kw.pop("max_new_tokens", 8), **kw)


def test_blip_beam_gives_n_distinct_candidates_with_finite_logprobs(blip_drafter, color_images, make_infos):
    images = list(color_images.values())
    drafts = blip_drafter.draft(images, make_infos(images), 4)
    assert [d.image.source for d in drafts] == ["img0", "img1", "img2"]
    assert blip_drafter.device == "cpu" and blip_drafter.dtype == torch.float32  # no CUDA here
    for d in drafts:
        texts = [c.text for c in d.candidates]
        assert len(texts) == 4 and len({t.lower() for t in texts}) == 4
        for c in d.candidates:
            assert c.drafter == "transformers" and math.isfinite(c.logprob) and c.logprob < 0
            tokens = int(next(e for e in c.evidence if e.startswith("tokens=")).split("=")[1])
            assert c.score == pytest.approx(math.exp(c.logprob / tokens), rel=1e-3)
        assert [c.score for c in d.candidates] == sorted((c.score for c in d.candidates), reverse=True)
        assert d.model_id == str(blip_drafter.settings.model)


def test_beam_logprobs_match_transformers_own_beam_scores(blip_drafter, color_images):
    """Our per-token bookkeeping (beam reordering, end token) must reproduce generate()'s sequences_scores."""
    image = color_images["red"]
    ours = blip_drafter.generate([image], 3)[0]
    k = blip_drafter._returned(3)
    inputs = blip_drafter._inputs([image])
    with torch.inference_mode():
        out = blip_drafter.model.generate(
            **inputs,
            num_beams=k,
            num_return_sequences=k,
            max_new_tokens=8,
            output_scores=True,
            return_dict_in_generate=True,
        )
    texts = blip_drafter.processor.batch_decode(
        out.sequences[:, -out.beam_indices.shape[1] :], skip_special_tokens=True
    )
    reference = {" ".join(t.split()).lower(): float(s) for t, s in zip(texts, out.sequences_scores)}
    for cand in ours:  # length_penalty = 1: sequences_scores is the mean token log-probability
        mean = float(next(e for e in cand.evidence if e.startswith("mean_logprob=")).split("=")[1])
        assert reference[cand.text.lower()] == pytest.approx(mean, abs=2e-3)


def test_sampling_gives_distinct_candidates(tiny_blip, color_images, make_infos):
    drafter = TransformersDrafter(_settings(tiny_blip, decoding="sample", temperature=1.0))
    torch.manual_seed(0)
    images = [color_images["green"]]
    cands = drafter.draft(images, make_infos(images), 5)[0].candidates
    assert len({c.text.lower() for c in cands}) == len(cands) >= 4
    assert all(math.isfinite(c.logprob) and 0 < c.score <= 1 for c in cands)


def test_chat_vlm_uses_its_template_and_keeps_images_apart(tiny_llava, color_images, make_infos):
    drafter = TransformersDrafter(_settings(tiny_llava, batch_size=4))
    assert drafter.chat and drafter.prompt == CHAT_PROMPT and drafter.tokenizer.padding_side == "left"
    ids = drafter._inputs([color_images["red"]])["input_ids"][0].tolist()
    assert "describe this image in one short sentence" in drafter.tokenizer.decode(ids).lower()
    images = [color_images["blue"], color_images["red"], color_images["green"]]
    batched = drafter.draft(images, make_infos(images), 3)
    alone = drafter.draft([color_images["red"]], make_infos([color_images["red"]]), 3)
    assert all(len(d.candidates) == 3 for d in batched)
    # Row bookkeeping: the red image's drafts do not depend on its neighbours in the batch.
    assert [c.text for c in batched[1].candidates] == [c.text for c in alone[0].candidates]
    assert {c.text for c in batched[0].candidates} != {c.text for c in batched[1].candidates}


def test_prompt_setting_reaches_the_model(tiny_blip, color_images):
    drafter = TransformersDrafter(_settings(tiny_blip, prompt="a picture of"))
    assert drafter.prompt == "a picture of" and not drafter.chat
    ids = drafter._inputs([color_images["red"]])["input_ids"][0].tolist()
    assert drafter.tokenizer.decode(ids, skip_special_tokens=True) == "a picture of"
    default = TransformersDrafter(_settings(tiny_blip))
    assert default.prompt == "a photography of"  # BLIP's captioning prompt


def test_bfloat16_weights_still_give_finite_logprobs(tiny_blip, color_images, make_infos):
    drafter = TransformersDrafter(_settings(tiny_blip, dtype="bfloat16"))
    assert next(drafter.model.parameters()).dtype == torch.bfloat16
    cands = drafter.draft([color_images["red"]], make_infos([color_images["red"]]), 2)[0].candidates
    assert len(cands) == 2 and all(math.isfinite(c.logprob) for c in cands)


def test_image_processor_beside_tokenizer_works(tiny_models_dir, color_images, make_infos):
    path = tiny_models.build_tiny_vit_gpt2(tiny_models_dir / "vit_gpt2")
    drafter = TransformersDrafter(_settings(path))
    assert drafter.prompt == ""
    cands = drafter.draft([color_images["blue"]], make_infos([color_images["blue"]]), 3)[0].candidates
    assert len(cands) == 3 and all(math.isfinite(c.logprob) for c in cands)


def test_text_only_model_is_refused_by_name(tiny_text_model):
    with pytest.raises(UnsupportedModelError) as info:
        TransformersDrafter(_settings(tiny_text_model))
    message = str(info.value)
    assert str(tiny_text_model) in message and "'gpt2'" in message and "vision-language" in message


def test_processor_without_images_is_refused(tiny_models_dir):
    path = tiny_models.build_tiny_vit_gpt2(tiny_models_dir / "vit_gpt2_no_images", image_processor=False)
    with pytest.raises(UnsupportedModelError, match="cannot take images") as info:
        TransformersDrafter(_settings(path))
    assert str(path) in str(info.value)


def test_missing_model_and_missing_setting(tmp_path):
    with pytest.raises(BackendUnavailableError, match="nowhere"):
        TransformersDrafter(_settings(tmp_path / "nowhere"))
    with pytest.raises(ConfigError, match=r"drafter\.transformers\.model"):
        TransformersDrafter(TransformersDrafterSettings())
