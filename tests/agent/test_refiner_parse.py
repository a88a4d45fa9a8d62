import pytest

from caption_agent.errors import ModelOutputError
from caption_agent.prompts import load_preset
from caption_agent.refiners import RefineJob, parse_refined
from caption_agent.schemas import GroundingFact
from caption_agent.text import fit_length, strip_opening

FACT = GroundingFact(id="MUG-001:color", sku="MUG-001", field="color", text="color: matte black", score=0.9)


def _job(**kw):
    return RefineJob(preset=load_preset("alt_text"), draft="An espresso.", facts=[FACT], **kw)


def test_json_answer_is_parsed_and_unknown_fact_ids_dropped():
    out = parse_refined('{"caption": "A matte black espresso cup.", "facts_used": ["MUG-001:color", "X:y"]}', _job())
    assert out.caption == "A matte black espresso cup." and out.facts_used == ["MUG-001:color"]


def test_plain_text_from_weak_models_is_accepted():
    assert (
        parse_refined("Caption: A cup of espresso on a saucer.\nmore", _job()).caption
        == "A cup of espresso on a saucer."
    )


@pytest.mark.parametrize(
    "raw",
    ['{"caption": "A cup', "", '{"caption": "Mug-001:color"}', '{"caption": "<draft>x</draft>"}', '{"caption": ""}'],
)
def test_unusable_answers_raise(raw):
    with pytest.raises(ModelOutputError):
        parse_refined(raw, _job())


@pytest.mark.parametrize(
    "raw",
    [
        "A rocket launch on a moon-bound moon-bound moon-bound moon-bound moon-bo",
        '{"caption": "An espresso cup on a saucer on a saucer on a saucer."}',
        "Tea tea tea tea.",
    ],
)
def test_decoding_loops_are_unusable(raw):
    with pytest.raises(ModelOutputError, match="in a loop"):
        parse_refined(raw, _job())
    # Ordinary repetition is prose, not a loop.
    assert parse_refined("A very very small cup; the cup is black.", _job()).caption


def test_length_is_enforced_after_generation():
    long = (
        "A matte black espresso cup with a thin handle stands on a matching saucer beside a silver spoon, a "
        "folded linen napkin, two sugar cubes and a small glass of water on a worn wooden cafe table near a "
        "bright window in the soft morning light of a quiet street corner."
    )
    out = parse_refined(long, _job(max_chars=60))
    assert len(out.caption) <= 60 and not out.caption.endswith(" ")
    assert len(parse_refined(long, _job()).caption) <= 125


def test_text_helpers():
    assert fit_length("one two three", 9) == "one two." and len(fit_length("x" * 50, 10)) == 10
    assert strip_opening("Image of a cat", ["image of"]) == "A cat"


def test_facts_used_are_attributed_by_the_values_the_caption_states():
    from caption_agent.refiners.base import attribute_facts
    from caption_agent.schemas import GroundingFact

    fields = {
        "title": "Hollowell Espresso Cup",
        "attributes.color": "matte black",
        "brand": "Hollowell",
        "description": "A small cup for espresso. Dishwasher safe and stackable, in stoneware.",
    }
    facts = [GroundingFact(id=f"M:{f}", sku="M", field=f, text=v, score=1.0, fields=fields) for f, v in fields.items()]
    used = attribute_facts(
        "The Hollowell espresso cup in matte-black: dishwasher safe and stackable, in stoneware.", facts
    )
    assert used == ["M:title", "M:attributes.color", "M:brand", "M:description"]
    assert attribute_facts("A black cup on a table.", facts) == []  # "black" alone is not "matte black"
