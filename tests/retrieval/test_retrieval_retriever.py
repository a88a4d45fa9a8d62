"""Retriever: filters, threshold, facts; and the LangChain standard retriever tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import pytest
from langchain_core.documents import Document
from langchain_tests.integration_tests import RetrieversIntegrationTests

from caption_agent.config import RetrievalSettings
from caption_agent.retrieval import CatalogRetriever, CatalogStore, Retriever, ingest_file
from caption_agent.retrieval.retriever import build_where, query_text
from caption_agent.schemas import ProductHint

ROOT = Path(__file__).resolve().parents[2]
GERMAN = {
    "sku": "DE-TASSE-1",
    "title": "Espressotasse aus Steinzeug",
    "brand": "Hollowell",
    "category": "Kitchen > Coffee > Cups",
    "attributes": {"Farbe": "mattschwarz"},
    "description": "Eine kleine Espressotasse in Mattschwarz.",
    "locale": "de-DE",
}


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory, minilm: Any) -> Iterator[CatalogStore]:
    """The example catalog plus one German product, ingested once for this module."""
    folder = tmp_path_factory.mktemp("shop")
    catalog = folder / "catalog.jsonl"
    catalog.write_text((ROOT / "examples" / "catalog.jsonl").read_text() + json.dumps(GERMAN) + "\n")
    settings = RetrievalSettings(catalog_dir=folder / "store")
    with CatalogStore.open(settings, minilm, writer=True) as store:
        assert ingest_file(catalog, store).added == 32
    reader = CatalogStore.open(settings)  # as the pipeline opens it: read-only, pinned embedder
    yield reader
    reader.close()


def test_build_where_combines_with_and() -> None:
    assert build_where(None) is None
    assert build_where(ProductHint(brand="Hollowell")) == {"brand": "Hollowell"}
    assert build_where(ProductHint(brand="B", category="C"), "de-DE") == {
        "$and": [{"brand": "B"}, {"category": "C"}, {"lang": "de"}]
    }
    # A named sku is not filtered by language.
    assert build_where(ProductHint(sku="S", brand="B"), "fr_FR") == {"$and": [{"sku": "S"}, {"brand": "B"}]}
    assert query_text(" a cup ", ProductHint(sku="S", brand="B", category="C")) == "a cup. Brand: B. Category: C"


@pytest.mark.slow
def test_draft_finds_the_product_and_facts_cite_fields(shop: CatalogStore) -> None:
    retriever = Retriever(shop, top_k=1, min_score=0.3)
    facts = retriever.facts("a black espresso cup on a saucer", ProductHint())
    assert {f.sku for f in facts} == {"MUG-001"}
    # Found by similarity, a product informs category words only: it is never named (issue 24 point 4).
    assert [f.field for f in facts] == ["category"] and "Hollowell" not in repr(facts)
    by_field = {f.field: f for f in retriever.facts("", ProductHint(sku="MUG-001"))}  # named by its sku: all
    assert set(by_field) == {
        "title",
        "brand",
        "category",
        "attributes.color",
        "attributes.material",
        "attributes.capacity",
        "description",
    }
    assert by_field["attributes.color"].text == "color: matte black"
    assert by_field["attributes.color"].id == "MUG-001:attributes.color"
    assert by_field["title"].fields["attributes.capacity"] == "90 ml"
    assert all(0.3 <= f.score <= 1.0 for f in facts)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("draft", "sku"),
    [
        ("a grey cat curled up in a bed", "CAT-BED-01"),
        ("a red motorcycle helmet", "HELMET-MX1"),
        ("a rocket on the launch pad", "ROCKET-KIT-3"),
        ("an astronaut in a spacesuit with a flag", "ASTRO-FIG-1"),
        ("a pagoda with curved roofs among trees", "POSTER-CN-PAG"),
        ("a camera tripod", "TRIPOD-PRO-55"),
    ],
)
def test_sample_photo_drafts_find_their_products(shop: CatalogStore, draft: str, sku: str) -> None:
    top = Retriever(shop, top_k=2).search(draft, locale="en-US")
    assert sku in [m.product.sku for m in top]


@pytest.mark.slow
def test_threshold_filters_and_named_sku_bypasses_it(shop: CatalogStore) -> None:
    strict = Retriever(shop, top_k=4, min_score=0.95)
    assert strict.facts("a black espresso cup", ProductHint()) == []
    named = strict.facts("completely unrelated words", ProductHint(sku="TEA-777"), locale="fr-FR")
    assert {f.sku for f in named} == {"TEA-777"} and all(f.score == 1.0 for f in named)
    # Catalog text comes back verbatim: redaction and injection handling belong to the policy engine.
    desc = next(f.text for f in named if f.field == "description")
    assert "orders@hollowell-shop.example" in desc and "+1 (555) 013-2447" in desc
    injected = strict.facts("", ProductHint(sku="MUG-INJ"))
    assert any("Ignore all previous instructions" in f.text for f in injected)
    assert strict.facts("   ", ProductHint()) == []


@pytest.mark.slow
def test_hint_filters_and_locale(shop: CatalogStore) -> None:
    retriever = Retriever(shop, top_k=10, min_score=0.0)
    cups = retriever.search(
        "something to drink from", ProductHint(brand="Hollowell", category="Kitchen > Coffee > Cups")
    )
    assert {m.product.sku for m in cups} == {"MUG-001", "MUG-002", "SAUCER-SET-4", "DE-TASSE-1"}
    english = retriever.search("espresso cup", ProductHint(brand="Hollowell"), locale="en-GB")
    german = retriever.search("espresso cup", ProductHint(brand="Hollowell"), locale="de-AT")
    assert "DE-TASSE-1" not in {m.product.sku for m in english}
    assert [m.product.sku for m in german] == ["DE-TASSE-1"]
    assert retriever.search("cup", ProductHint(brand="Nobody")) == []
    assert [m.product.sku for m in retriever.search("x", ProductHint(sku="MUG-001", brand="Purrfect"))] == []
    # k counts products; a product found by similarity gives one fact, its category (issue 24 point 4).
    assert [f.field for f in retriever.facts("a mug", k=2)] == ["category", "category"]
    assert len({f.sku for f in retriever.facts("a mug", k=2)}) == 2


@pytest.mark.slow
def test_search_many_equals_one_by_one_with_one_embedder_call(shop: CatalogStore, monkeypatch) -> None:
    retriever = Retriever(shop, top_k=2, min_score=0.25)
    queries = [
        ("a grey cat curled up in a bed", None),
        ("espresso cup", ProductHint(brand="Hollowell")),
        ("", ProductHint()),
        ("words", ProductHint(sku="TEA-777")),
        ("a red motorcycle helmet", None),
        ("cup", ProductHint(brand="Nobody")),
    ]
    single = [[(m.product.sku, round(m.score, 4)) for m in retriever.search(q, h, "en-US")] for q, h in queries]
    calls: list[int] = []
    encode = shop.embedder.encode
    monkeypatch.setattr(shop.embedder, "encode", lambda texts, **kw: calls.append(len(texts)) or encode(texts, **kw))
    batched = retriever.search_many(queries, "en-US")
    assert [[(m.product.sku, round(m.score, 4)) for m in ms] for ms in batched] == single
    assert calls == [4]  # the four free-text queries in one call; the empty one and the named sku need none
    assert single[0][0][0] == "CAT-BED-01" and single[2] == [] and single[3] == [("TEA-777", 1.0)]
    facts = retriever.facts_many(queries, "en-US")
    assert [sorted({f.sku for f in fs}) for fs in facts] == [sorted({sku for sku, _ in s}) for s in single]


@pytest.mark.slow
def test_langchain_documents(shop: CatalogStore) -> None:
    lc = Retriever(shop, top_k=2, min_score=0.0).as_langchain(hint=ProductHint(category="Pets > Cats > Beds"))
    docs = lc.invoke("a cat")
    assert [d.id for d in docs] == ["CAT-BED-01"]
    assert docs[0].metadata["attributes.material"] == "felt" and "CAT-BED-01:title" in docs[0].metadata["fact_ids"]
    assert isinstance(docs[0], Document) and docs[0].page_content.startswith("Purrfect Felt Cat Cave")


@pytest.mark.slow
class TestCatalogRetrieverStandard(RetrieversIntegrationTests):
    """langchain-tests' standard retriever suite against the real store."""

    @pytest.fixture(autouse=True)
    def _store(self, shop: CatalogStore) -> None:
        type(self)._shop = shop

    @property
    def retriever_constructor(self) -> type[CatalogRetriever]:
        return CatalogRetriever

    @property
    def retriever_constructor_params(self) -> dict[str, Any]:
        return {"store": type(self)._shop, "min_score": 0.0}

    @property
    def retriever_query_example(self) -> str:
        return "a matte black espresso cup"
