"""End to end on the real bundled models, real photos and a real embedded Chroma catalog."""

import pytest

from caption_agent import CaptionRequest, ProductHint
from caption_agent.errors import InvalidImageError, InvalidLocaleError, UnknownStyleError

pytestmark = pytest.mark.slow


def _text(result) -> str:
    return " ".join(filter(None, [result.text, result.draft])).lower()


def test_cat_and_espresso_photos_are_captioned_from_the_image(offline_agent, images_dir):
    cat, coffee = offline_agent.caption_batch([images_dir / "chelsea.jpg", images_dir / "coffee.jpg"])
    assert cat.status == "ok" and coffee.status == "ok", (cat.error, coffee.error)
    assert "cat" in _text(cat)
    assert any(w in _text(coffee) for w in ("coffee", "espresso", "cup"))
    for result in (cat, coffee):
        assert 0 < len(result.text) <= 125  # alt_text budget
        assert not result.text.lower().startswith(("image of", "picture of"))
        assert 0.0 <= result.confidence <= 1.0
        assert len(result.candidates) == offline_agent.config.drafter.n_candidates
        assert result.candidates[0].rank_score >= result.candidates[-1].rank_score


def test_sku_hint_grounds_the_result_and_provenance_is_complete(offline_agent, images_dir):
    result = offline_agent.caption(images_dir / "coffee.jpg", style="seo_product", sku="MUG-001")
    assert result.status in ("ok", "review"), result.error
    assert result.facts and all(f.sku == "MUG-001" for f in result.facts)
    assert any("matte black" in f.text for f in result.facts)
    prov = result.provenance
    assert prov.drafter == "lite" and prov.drafter_model.startswith("efficientnet-lite0")
    assert "SmolLM2" in prov.refiner_model and prov.refiner == "local"
    assert prov.embedder.endswith("all-MiniLM-L6-v2")
    assert len(prov.prompt_hash) == 16 and prov.prompt_version == "seo_product@1"
    assert prov.policy_version and len(prov.policy_hash) >= 16
    assert {"load", "draft", "rank", "ground", "refine", "moderate"} <= set(prov.timings_ms)
    assert result.decisions and all(d.rule and d.reason for d in result.decisions)


def test_email_planted_in_catalog_never_reaches_prompt_or_output(offline_agent, images_dir):
    result = offline_agent.caption(images_dir / "coffee.jpg", style="seo_product", sku="TEA-777")
    assert result.facts, "TEA-777 facts should be retrieved"
    blob = result.model_dump_json()
    assert "orders@hollowell-shop.example" not in blob
    assert any(d.action == "redact" for d in result.decisions)


def test_batch_keeps_going_past_bad_items(offline_agent, images_dir, tmp_path):
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    reqs = [
        CaptionRequest(image=images_dir / "chelsea.jpg", key="good"),
        CaptionRequest(image=empty, key="empty"),
        CaptionRequest(image=text, key="text"),
        CaptionRequest(image=tmp_path / "missing.jpg", key="missing"),
        CaptionRequest(image=images_dir / "coffee.jpg", style="haiku", key="style"),
        CaptionRequest(image=images_dir / "coffee.jpg", locale="xx-QQ", key="locale"),
        CaptionRequest(image=images_dir / "coffee.jpg", hint=ProductHint(sku="NO-SUCH-SKU"), key="sku"),
    ]
    results = offline_agent.caption_batch(reqs)
    by_key = {r.key: r for r in results}
    assert [r.key for r in results] == [r.key for r in reqs]
    assert by_key["good"].status == "ok"
    for key, err in [
        ("empty", "InvalidImageError"),
        ("text", "InvalidImageError"),
        ("missing", "InvalidImageError"),
        ("style", "UnknownStyleError"),
        ("locale", "InvalidLocaleError"),
        ("sku", "UnknownSkuError"),
    ]:
        assert by_key[key].status == "error" and by_key[key].error.type == err and "Fix:" in by_key[key].error.message
        assert by_key[key].error.stage == "input"
        prov = by_key[key].provenance  # results that end before refinement still say what produced them
        assert prov.package_version and prov.policy_version and len(prov.policy_hash) >= 16


def test_single_caption_raises_clear_errors(offline_agent, images_dir, tmp_path):
    with pytest.raises(UnknownStyleError, match="haiku"):
        offline_agent.caption(images_dir / "coffee.jpg", style="haiku")
    with pytest.raises(InvalidLocaleError):
        offline_agent.caption(images_dir / "coffee.jpg", locale="english please")
    with pytest.raises(InvalidImageError, match="does not exist"):
        offline_agent.caption(tmp_path / "nope.png")


def test_runnable_batch_matches_api(offline_agent, images_dir):
    chain = offline_agent.as_runnable()
    out = chain.batch([{"image": str(images_dir / "chelsea.jpg")}, CaptionRequest(image=images_dir / "coffee.jpg")])
    assert [r.status for r in out] == ["ok", "ok"] and "cat" in _text(out[0])
