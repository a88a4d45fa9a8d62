"""Localize what was captioned: a caption job's structured result (subject, facts, style, image text), not only
its text, so what could be captioned in a locale can be localized into it (template refiner, offline)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from caption_agent.jobs.localize_job import LocalizeStage, iter_localize_items
from caption_agent.retrieval.product import Product
from caption_agent.retrieval.retriever import product_facts
from caption_agent.schemas import CaptionResult, DraftSubject

ROOT = Path(__file__).resolve().parents[2]
CUP = next(
    Product.model_validate(json.loads(line))
    for line in (ROOT / "examples" / "catalog.jsonl").open()
    if '"MUG-001"' in line
)
CONFIG = {"refiner": {"backend": "template", "fallbacks": []}}


def _result(**kw) -> CaptionResult:
    base = {
        "key": "k1",
        "status": "ok",
        "text": "An espresso. Hollowell Espresso Cup.",
        "style": "alt_text",
        "locale": "en-US",
        "draft": "An espresso in a mostly black scene.",
        "facts": [f.model_dump(mode="json") for f in product_facts(CUP, 0.9)],
        "decisions": [{"rule": "image_safety", "action": "allow", "reason": "ok", "details": {"faces": 0}}],
    }
    return CaptionResult.model_validate({**base, **kw})


@pytest.fixture(scope="module")
def stage():
    return LocalizeStage(CONFIG)


def test_a_caption_result_is_localized_from_its_subject(stage):
    result = _result(subject=DraftSubject(name="an espresso", mass=0.9))
    de, fr, es = stage.agent.localize(result, ["de-DE", "fr-FR", "es-ES"])  # the library call
    assert (de.status, de.text) == ("ok", "Ein Espresso. Hollowell Espressotasse.")
    assert (fr.text, es.text) == (
        "Un expresso. Tasse à espresso Hollowell.",
        "Un café expreso. Taza de café expreso Hollowell.",
    )
    assert de.provenance.refined_by == "template"


def test_without_a_structured_subject_the_ranked_draft_names_it(stage, tmp_path):
    """The regression of issue 28: English alt text into de-DE failed with "subject could not be read"."""
    path = tmp_path / "results.jsonl"
    path.write_text(json.dumps(_result().model_dump(mode="json")) + "\n")
    items = list(iter_localize_items(path, ["de-DE"], style="alt_text"))
    assert items[0].subject == {"name": "espresso", "synset": None, "mass": 1.0, "required": 0.0, "people": 0,
                                "context": [], "synsets": []}  # fmt: skip
    (record,) = stage(items)
    assert record["status"] == "ok" and record["text"] == "Ein Espresso. Hollowell Espressotasse."


def test_text_read_from_the_image_reaches_the_prompt_as_a_quote_never_a_translation(stage):
    result = _result(subject=DraftSubject(name="an espresso"), image_text="HOLLOWELL ESPRESSO")
    items = list(iter_localize_items_from(result))
    assert items[0].image_text == "HOLLOWELL ESPRESSO"
    from caption_agent.policies import ModerationContext
    from caption_agent.policies.rules.glossary import refine_terms
    from caption_agent.prompts import load_preset

    ctx = ModerationContext(preset=load_preset("alt_text"), locale="de-DE", draft="x", image_text="HOLLOWELL")
    assert any("never translate it" in line for line in refine_terms(stage.policy, ctx)[1])


def iter_localize_items_from(result: CaptionResult):
    from caption_agent.jobs.localize_job import CaptionRow, result_row, row_items

    row = CaptionRow.model_validate(result_row(result.model_dump(mode="json")))
    return row_items(row, ["de-DE"], style="alt_text")


def test_the_library_call_keeps_the_structured_parts(stage):
    """CaptionAgent.localize: the source's key, its text as the draft, its facts, and the image's text as written."""
    result = _result(subject=DraftSubject(name="an espresso", mass=0.9), image_text="HOLLOWELL ESPRESSO")
    (de,) = stage.agent.localize(result, ["de_de"])
    assert (de.key, de.locale, de.draft, de.image_text) == ("k1", "de-DE", result.text, "HOLLOWELL ESPRESSO")
    assert [f.id for f in de.facts] == [f.id for f in result.facts]
    assert de.provenance.prompt_version.startswith("alt_text@") and de.provenance.policy_hash
    with pytest.raises(ValueError, match="no text to localize"):
        stage.agent.localize(_result(status="review", text=None), ["de-DE"])
