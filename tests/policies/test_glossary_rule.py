"""The glossary rule: kept terms, forbidden renderings and register, checked on every output; the same terms
reach the refiners as constraints."""

from __future__ import annotations

from pathlib import Path

import pytest

from caption_agent.glossary import load_glossary
from caption_agent.policies import PolicyEngine
from caption_agent.policies.rules.glossary import refine_terms
from caption_agent.refiners import RefineJob
from caption_agent.schemas import GroundingFact

ROOT = Path(__file__).resolve().parents[2]
GLOSSARY = ROOT / "examples" / "glossary_l10n.yaml"


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    path = tmp_path_factory.mktemp("policy") / "policy.yaml"
    path.write_text(f"extends: default\nversion: t1\nrules:\n  glossary:\n    files: [{str(GLOSSARY)!r}]\n")
    return PolicyEngine.load(path)


def fact(text: str, sku: str, **fields: str) -> GroundingFact:
    return GroundingFact(id=f"{sku}:title", sku=sku, field="title", text=text, score=0.9, fields=fields)


def _glossary(outcome):
    return next(d for d in outcome.decisions if d.rule == "glossary")


def test_glossary_violations_regenerate_then_hold(engine, make_ctx):
    nordvik = [fact("Nordvik Stoneware Mug", sku="NV-MUG-01", brand="Nordvik")]
    ctx = make_ctx(preset="seo_product", locale="de-DE", facts=nordvik, draft="A mug.")
    out = engine.review("Nordvik Steinzeug-Kaffeetasse mit breitem Henkel, spülmaschinenfest.", ctx)
    # The glossary asks for another attempt; `faithful` holds it anyway (the lexicon's name for a mug is "Becher"),
    # so the chain's next link writes it.
    assert _glossary(out).action == "regenerate" and "Kaffeetasse" in _glossary(out).reason
    assert out.action == "review"
    out = engine.review("NORDVIK Steinzeug-Becher mit breitem Henkel, spülmaschinenfest.", ctx)
    assert out.action == "regenerate" and "'Nordvik' written as 'NORDVIK'" in _glossary(out).reason
    assert any("Nordvik" in f for f in out.feedback)  # the refiner is told the kept spelling
    # The caption names the lexicon's Becher (a caption with "Kaffeetasse" alone is also held by the faithful rule).
    out = engine.review("Nordvik Steinzeug-Becher, die Kaffeetasse mit breitem Henkel, spülmaschinenfest.", ctx)
    assert out.action == "regenerate" and "Kaffeetasse" in _glossary(out).reason
    assert any("Becher" in f for f in out.feedback)  # the refiner is told the prescribed word
    ctx = make_ctx(preset="seo_product", locale="de-DE", facts=nordvik, draft="A mug.", attempts_left=0)
    out = engine.review("NORDVIK Steinzeug-Becher mit breitem Henkel, spülmaschinenfest.", ctx)
    assert out.action == "review" and "'Nordvik' written as 'NORDVIK'" in _glossary(out).reason
    out = engine.review("Nordvik Steinzeug-Becher mit breitem Henkel, spülmaschinenfest.", ctx)
    assert out.action == "allow", out.decisions


def test_terms_are_scoped_by_brand_and_kept_names_are_not_translated(engine, make_ctx):
    other = [fact("Hollowell Espresso Cup", sku="MUG-001", brand="Hollowell")]
    ctx = make_ctx(preset="seo_product", locale="de-DE", facts=other, attempts_left=0)
    assert _glossary(engine.review("Hollowell Espressotasse aus Steinzeug, spülmaschinenfest.", ctx)).action == "allow"
    lamp = [fact("Fjordlys Table Lamp", sku="FL-LMP-01", brand="Fjordlys")]
    ctx = make_ctx(preset="seo_product", locale="de-DE", facts=lamp, attempts_left=0)
    out = engine.review("Fjordlicht Tischleuchte mit Leinenschirm und dimmbarer LED.", ctx)
    assert out.action == "review" and "translated as 'Fjordlicht'" in _glossary(out).reason


def test_register_follows_the_style(engine, make_ctx):
    ctx = make_ctx(preset="social", locale="de-DE", attempts_left=0)
    assert _glossary(engine.review("Dein neuer Lieblingsbecher für jeden Morgen, probier ihn aus!", ctx)).action == (
        "allow"
    )
    out = engine.review("Ihr neuer Lieblingsbecher: gönnen Sie sich jeden Morgen eine Pause!", ctx)
    assert out.action == "review" and "formally" in _glossary(out).reason
    # "Sie" opening a sentence may be "they": not counted; product copy speaks formally
    ctx = make_ctx(preset="seo_product", locale="de-DE", attempts_left=0)
    assert _glossary(engine.review("Sie ist aus Steinzeug. Passend für Ihren Espresso am Morgen.", ctx)).action == (
        "allow"
    )
    assert _glossary(engine.review("Der Becher für deinen Espresso am Morgen aus Steinzeug.", ctx)).action == "review"


def test_refiners_get_the_terms_as_prompt_constraints(engine, make_ctx):
    nordvik = [fact("Nordvik Stoneware Mug", sku="NV-MUG-01", brand="Nordvik")]
    ctx = make_ctx(preset="social", locale="de-DE", facts=nordvik, image_text="NORDVIK 0.35 L")
    glossary, constraints = refine_terms(engine, ctx)
    assert glossary == load_glossary(GLOSSARY)
    job = RefineJob(preset=ctx.preset, draft="A mug.", locale="de-DE", facts=nordvik, constraints=constraints)
    user = job.prompt().messages[1]["content"]
    assert 'Translate "mug" as "Becher".' in user and 'Write "Nordvik" exactly so' in user
    assert "Address the reader informally (du)." in user
    assert "never translate it" in user and "text read from the image" in user
    assert refine_terms(object(), ctx) == (None, [])  # a policy without the rule
