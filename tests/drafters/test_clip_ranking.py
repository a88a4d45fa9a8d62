"""CLIP-S ranking with a CLIP whose weights are set so that colour words match image colours."""

from __future__ import annotations

import pytest
import torch

from caption_agent.errors import UnsupportedModelError
from caption_agent.ranking_clip import ClipRanker
from caption_agent.schemas import Candidate

CAPTIONS = ["A red square.", "A blue square.", "A green square."]


@pytest.fixture(scope="module")
def ranker(color_clip):
    return ClipRanker(str(color_clip), drafter_weight=0.5)


def _cands(texts, score=0.5):
    return [Candidate(text=t, drafter="test", score=score) for t in texts]


@pytest.mark.parametrize("color", ["red", "blue", "green"])
def test_matching_caption_ranks_first(ranker, color_images, color):
    ranked, confidence = ranker.rank(_cands(CAPTIONS), color_images[color])
    assert ranked[0].text == f"A {color} square."
    assert confidence == ranked[0].rank_score and 0.0 <= confidence <= 1.0
    assert ranked[0].rank_score > ranked[1].rank_score
    clip_s = {c.text: float(next(e for e in c.evidence if e.startswith("clip_s=")).split("=")[1]) for c in ranked}
    assert clip_s[f"A {color} square."] > 0 and all(v == 0 for t, v in clip_s.items() if color not in t)


def test_clip_s_is_2_5_times_clipped_cosine_of_the_model(ranker, color_clip, color_images):
    """Cross-check against CLIPModel's own forward: logits_per_image / logit_scale is the cosine."""
    from transformers import CLIPModel, CLIPProcessor

    model, processor = CLIPModel.from_pretrained(color_clip), CLIPProcessor.from_pretrained(color_clip)
    image = color_images["red"].resize((52, 40))
    texts = ["a red square", "a red and blue square", "a blue square"]
    inputs = processor(text=texts, images=[image], return_tensors="pt", padding=True)
    with torch.inference_mode():
        out = model(**inputs)
        cos = (out.logits_per_image / model.logit_scale.exp())[0].numpy()
    assert ranker.clip_s(texts, image) == pytest.approx(2.5 * cos.clip(min=0), abs=1e-4)


def test_drafter_probability_blends_in(ranker, color_images):
    sure = Candidate(text="A blue square.", drafter="test", score=0.99)
    unsure = Candidate(text="A red square.", drafter="test", score=0.01)
    trusting = ClipRanker.__new__(ClipRanker)
    trusting.__dict__.update(ranker.__dict__, drafter_weight=1.0)
    assert trusting.rank([unsure, sure], color_images["red"])[0][0].text == "A blue square."
    assert ranker.rank([unsure, sure], color_images["red"])[0][0].text == "A red square."


def test_provenance_names_the_clip_model(ranker, color_clip):
    assert ranker.name == "clip" and str(color_clip) in ranker.model_id and "CLIP-S" in ranker.model_id


def test_a_model_without_image_features_is_refused(tiny_text_model):
    with pytest.raises(UnsupportedModelError, match="not a CLIP-style"):
        ClipRanker(str(tiny_text_model))
