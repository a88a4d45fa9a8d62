"""The relevance gate: a product found by similarity alone is used only when it is what the draft is about."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from caption_agent.drafters.hedging import PERSON, hierarchy, synsets_in_text
from caption_agent.retrieval.product import Product
from caption_agent.retrieval.relevance import RelevanceGate, category_synsets, contradiction, load_category_table
from caption_agent.retrieval.retriever import Retriever, product_facts, similar_facts
from caption_agent.schemas import DraftSubject, GroundingFact, ProductHint

ROOT = Path(__file__).resolve().parents[2]


def _subject(*wnids: str) -> DraftSubject:
    tree = hierarchy()
    synsets = sorted(set().union(*(tree.ancestors(w) for w in wnids)))
    return DraftSubject(name=tree.phrases.get(wnids[0], "x"), synset=wnids[0], mass=0.9, synsets=synsets)


def _facts(sku: str, category: str, score: float) -> list[GroundingFact]:
    fields = {"sku": sku, "title": f"Product {sku}", "category": category}
    return [
        GroundingFact(id=f"{sku}:title", sku=sku, field="title", text=f"Product {sku}", score=score, fields=fields),
        GroundingFact(id=f"{sku}:category", sku=sku, field="category", text=category, score=score, fields=fields),
    ]


TRIPOD, MOPED, CAT, COFFEE = "n04485082", "n03785016", "n02121620", "n07929519"


def test_categories_map_by_longest_whole_step_prefix():
    assert category_synsets("Electronics > Cameras > Tripods") == {TRIPOD}
    assert category_synsets("electronics >  cameras > tripods > Travel") == {TRIPOD}  # deeper path, same row
    assert COFFEE in category_synsets("Kitchen > Coffee > Cups")
    assert category_synsets("Kitchen > Coffee > Cupsets") == frozenset()  # whole steps only
    assert category_synsets("Pets > Cats > Furniture") == frozenset()  # a row with no synset
    assert category_synsets(None) == frozenset()
    table = load_category_table("# c\nA > B\tn1,n2\tnote\nA\tn3\n")
    assert category_synsets("A > B > C", table) == {"n1", "n2"} and category_synsets("A > X", table) == {"n3"}


def test_every_table_synset_is_a_wordnet_noun_id():
    text = (ROOT / "retrieval" / "data" / "category_synsets.tsv").read_text(encoding="utf-8")
    for wnids in load_category_table(text).values():
        assert all(len(w) == 9 and w[0] == "n" and w[1:].isdigit() for w in wnids)


def test_every_catalog_category_is_mapped_or_deliberately_not():
    unmapped = set()
    for name in ("examples/catalog.jsonl", "examples/relevance/catalog.jsonl"):
        for line in (ROOT / name).read_text(encoding="utf-8").splitlines():
            category = json.loads(line).get("category")
            if category and not category_synsets(category):
                unmapped.add(category)
    assert unmapped == {"Pets > Cats > Furniture"}


def test_the_moped_under_a_tripod_photo_is_dropped():
    gate = RelevanceGate(min_score=0.21)
    facts = _facts("TRIPOD-1", "Electronics > Cameras > Tripods", 0.45) + _facts(
        "MOPED-1", "Vehicles > Scooters & Mopeds", 0.52
    )
    kept, why = gate.filter(facts, _subject(PERSON, TRIPOD), "A person with a tripod.")
    assert {f.sku for f in kept} == {"TRIPOD-1"}
    assert why is not None and "MOPED-1" in why and "not the draft's category" in why and "kept 1" in why


def test_an_ancestor_category_passes_and_a_low_score_does_not():
    gate = RelevanceGate(min_score=0.3)
    # "Vehicles > Motorcycles" is the motorcycle synset, an ancestor of the drafted moped.
    assert gate.judge("M", "Vehicles > Motorcycles", 0.5, frozenset(_subject(MOPED).synsets)).keep
    # A more specific category than the draft knows is not accepted: "a motorcycle" is not "a moped".
    assert not gate.judge("S", "Vehicles > Scooters & Mopeds", 0.5, frozenset(_subject("n03790512").synsets)).keep
    low = gate.judge("T", "Electronics > Cameras > Tripods", 0.25, frozenset(_subject(TRIPOD).synsets))
    assert not low.keep and "0.25 < 0.30" in low.reason


def test_when_every_product_is_dropped_the_caption_goes_without_facts():
    facts = _facts("BED-1", "Pets > Cats > Beds", 0.6) + _facts("TOY-1", "Pets > Cats > Toys", 0.55)
    kept, why = RelevanceGate().filter(facts, _subject(CAT), "A cat.")
    assert kept == [] and why is not None and why.endswith("captioned without facts")
    unnamed, why = RelevanceGate().filter(facts, DraftSubject(), "A mostly grey scene.")
    assert unnamed == [] and "the draft names no category" in (why or "")


def test_without_a_subject_the_draft_text_names_the_category():
    facts = _facts("TRIPOD-1", "Electronics > Cameras > Tripods", 0.5)
    assert RelevanceGate().filter(facts, None, "A photographer with a camera on a tripod.")[0] == facts
    assert RelevanceGate().filter(facts, None, "A sunset over the sea.")[0] == []


def test_retriever_trusts_a_named_sku_and_a_retriever_without_gate():
    facts = _facts("MOPED-1", "Vehicles > Scooters & Mopeds", 0.2)
    gated = Retriever(store=None, gate=RelevanceGate())  # type: ignore[arg-type]
    assert gated.gated(facts, _subject(CAT), "A cat.", ProductHint(sku="MOPED-1")) == (facts, None)
    assert gated.gated(facts, _subject(CAT), "A cat.")[0] == []
    assert Retriever(store=None).gated(facts, _subject(CAT), "A cat.") == (facts, None)  # type: ignore[arg-type]


@pytest.fixture
def gated_agent(lite_drafter, catalog_dir, embedder):
    from caption_agent import AgentConfig, CaptionAgent

    config = AgentConfig.load(retrieval={"catalog_dir": catalog_dir}, refiner={"backend": "none"})
    agent = CaptionAgent(config, drafter=lite_drafter, embedder=embedder)
    yield agent
    agent.close()


def _camera_png() -> bytes:
    import skimage.data
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(skimage.data.camera()).convert("RGB").save(buf, "PNG")
    return buf.getvalue()


@pytest.mark.slow
def test_pipeline_grounds_the_tripod_photo_on_tripods_only(gated_agent):
    result = gated_agent.caption(_camera_png(), style="seo_product")
    assert "tripod" in (result.draft or "").lower()
    assert result.facts and {f.sku for f in result.facts} == {"TRIPOD-PRO-55"}
    assert not any("moped" in f.text.lower() for f in result.facts)
    # Found by similarity: its category informs, its name never appears (no title, brand or description).
    assert {f.field for f in result.facts} == {"category"}
    assert not any({"title", "brand", "description"} & set(f.fields) for f in result.facts)
    assert "steadyline" not in (result.text or "").lower()


@pytest.mark.slow
def test_pipeline_records_why_a_photo_got_no_facts(gated_agent, images_dir):
    cat = gated_agent.caption(images_dir / "chelsea.jpg", style="seo_product")
    assert cat.facts == []
    assert any("relevance gate" in note and "captioned without facts" in note for note in cat.provenance.fallbacks)
    named = gated_agent.caption(images_dir / "chelsea.jpg", style="seo_product", sku="TRIPOD-PRO-55")
    assert named.facts and {f.sku for f in named.facts} == {"TRIPOD-PRO-55"}  # the caller's sku is not gated ...
    # ... but a cat photo for a tripod's sku is a confident contradiction: held, with a reason naming both.
    assert named.status == "review"
    held = [d for d in named.decisions if d.rule == "catalog" and d.action == "review"]
    assert held and "a cat" in held[0].reason and "a tripod" in held[0].reason
    assert held[0].details["code"] == "catalog.contradiction" and held[0].details["fix"]


def test_a_similar_product_gives_its_category_and_never_its_name():
    mug = Product(
        sku="MUG-9",
        title="Harbor Latte Mug",
        brand="Harbor",
        category="Kitchen > Coffee > Cups",
        description="A latte mug.",
        attributes={"color": "navy"},
    )
    (only,) = similar_facts(mug, 0.4)
    assert (only.id, only.field, only.fields) == (
        "MUG-9:category",
        "category",
        {"sku": "MUG-9", "category": "Kitchen > Coffee > Cups"},
    )
    assert "Harbor" not in only.text
    assert similar_facts(mug.model_copy(update={"category": None}), 0.4) == []
    assert {f.field for f in product_facts(mug, 1.0)} >= {"title", "brand", "description"}  # a sku's product: all


def test_a_confident_contradiction_names_both_sides():
    why = contradiction(synsets_in_text("A cat in brown and grey tones."), "Electronics > Cameras > Tripods")
    assert why == "the photo shows a cat; the product is a tripod (Electronics > Cameras > Tripods)"
    assert "a cup" in (contradiction(synsets_in_text("A cup in white tones."), "Kitchen > Tea > Teapots") or "")


@pytest.mark.parametrize(
    ("draft", "category"),
    [
        ("A cup of coffee on a saucer.", "Kitchen > Coffee > Cups"),  # the same category
        ("A vehicle in grey tones.", "Automotive > Motorcycle > Helmets"),  # the path names the vehicle
        ("A cat in brown.", "Pets > Cats > Beds"),  # a cat bed is for the cat
        ("A camera in black.", "Electronics > Cameras > Tripods"),  # a camera accessory
        ("A person with a cup.", "Electronics > Cameras > Tripods"),  # people hold products: not judged
        ("A mostly navy scene.", "Electronics > Cameras > Tripods"),  # colours only: nothing to contradict
        ("A cat in brown.", "Garden > Unmapped"),  # a category the table does not map: unknown
    ],
)
def test_no_contradiction_when_the_photo_can_show_the_product(draft, category):
    assert contradiction(synsets_in_text(draft), category) is None


def test_catalog_rule_holds_a_contradicted_sku_and_lets_the_rest_pass():
    from caption_agent.policies import ModerationContext
    from caption_agent.policies.rules.catalog import CatalogConfig, CatalogRule
    from caption_agent.prompts import load_preset

    tripod = Product(sku="TRIPOD-PRO-55", title="Steadyline Tripod", category="Electronics > Cameras > Tripods")
    rule = CatalogRule(CatalogConfig())

    def check(draft, facts, faces=0):
        ctx = ModerationContext(
            preset=load_preset("seo_product"), locale="en-US", draft=draft, facts=facts, faces=faces
        )
        return rule.check_output("Steadyline Tripod: a steady aluminium tripod.", ctx).decisions[0]

    held = check("A cat in brown and grey tones.", product_facts(tripod, 1.0))
    assert held.action == "review" and held.details["code"] == "catalog.contradiction"
    assert "TRIPOD-PRO-55" in held.reason and "a cat" in held.reason and "a tripod" in held.reason
    assert check("A cat in brown and grey tones.", product_facts(tripod, 1.0), faces=1).action == "allow"
    assert check("A cat in brown and grey tones.", similar_facts(tripod, 0.3)).action == "allow"  # no sku named
    assert check("A tripod in black.", product_facts(tripod, 1.0)).action == "allow"
