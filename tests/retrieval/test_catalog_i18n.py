"""Localized catalog fields: the schema, CSV/JSONL reading, storage round trip and the facts' locale views."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Callable

import pytest

from caption_agent.config import RetrievalSettings
from caption_agent.retrieval import CatalogStore, Retriever, ingest_file
from caption_agent.retrieval.catalog import read_catalog
from caption_agent.retrieval.i18n import localized_fields
from caption_agent.retrieval.product import TEXT_VERSION, Product
from caption_agent.retrieval.retriever import product_fields
from caption_agent.schemas import ProductHint

ROOT = Path(__file__).resolve().parents[2]
ROW: dict[str, Any] = {
    "sku": "MUG-1",
    "title": "Espresso Cup",
    "brand": "Hollowell",
    "attributes": {"color": "matte black", "capacity": "90 ml"},
    "description": "A small cup.",
    "i18n": {
        "de": {"title": "Espressotasse", "description": "Eine kleine Tasse.", "attributes": {"color": "mattschwarz"}},
        "fr_FR": {"title": "Tasse à espresso", "attributes": {"capacity": 90}},
    },
}


def test_localized_texts_validate_and_normalise_their_locales() -> None:
    product = Product.model_validate(ROW)
    assert set(product.i18n) == {"de", "fr-FR"}
    assert product.i18n["fr-FR"].attributes == {"capacity": "90"}  # the catalog's own attribute rules
    assert product_fields(product)["i18n.de.attributes.color"] == "mattschwarz"


@pytest.mark.parametrize(
    ("i18n", "message"),
    [
        ({"xx-QQ-1": {"title": "x"}}, "not a known"),
        ({"de-DE": {"title": "Tasse", "attributes": {"weight": "1 kg"}}}, "lacks: weight"),
        ({"de-DE": {"description": "ohne Titel"}}, "title"),
        ({"de-DE": {"title": "Tasse", "colour": "rot"}}, "Extra inputs"),
        ("{not json", "not valid JSON"),
        (["de-DE"], "JSON object"),
    ],
)
def test_bad_localized_texts_are_rejected_with_the_reason(i18n: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Product.model_validate({**ROW, "i18n": i18n})


def test_csv_takes_an_i18n_json_column(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    cell = json.dumps({"de-DE": {"title": "Tasse"}}).replace('"', '""')
    path.write_text(f'sku,title,attr.color,i18n\nA,Cup,red,"{cell}"\n', encoding="utf-8")
    ((_, product),) = list(read_catalog(path))
    assert isinstance(product, Product) and product.i18n["de-DE"].title == "Tasse"


def test_metadata_round_trip_and_unchanged_hashes_without_translations() -> None:
    product = Product.model_validate(ROW)
    assert Product.from_metadata(product.to_metadata()) == product
    plain = Product.model_validate({k: v for k, v in ROW.items() if k != "i18n"})
    assert "i18n" not in plain.to_metadata()
    legacy = {k: v for k, v in plain.model_dump().items() if k != "i18n"}  # the hash before i18n existed
    blob = json.dumps([TEXT_VERSION, legacy], sort_keys=True, ensure_ascii=False)
    assert plain.content_hash() == hashlib.sha256(blob.encode("utf-8")).hexdigest()[:32]
    assert product.content_hash() != plain.content_hash()


def test_locale_views_of_fact_fields() -> None:
    fields = product_fields(Product.model_validate(ROW))
    assert localized_fields(fields, "en-GB")["title"] == "Espresso Cup"  # written in English already
    assert localized_fields(fields, "de-AT")["title"] == "Espressotasse"  # the bare language serves de-AT
    assert localized_fields(fields, "fr-FR") == {
        "title": "Tasse à espresso",
        "attributes.capacity": "90",
        "sku": "MUG-1",
        "brand": "Hollowell",
    }
    assert localized_fields(fields, "es-ES") is None


def test_every_sample_product_has_german_french_and_spanish_text() -> None:
    for _, product in read_catalog(ROOT / "examples" / "catalog.jsonl"):
        assert isinstance(product, Product)
        for tag in ("de-DE", "fr-FR", "es-ES"):
            texts = product.i18n[tag]
            assert texts.title and texts.description and set(texts.attributes) == set(product.attributes), tag


@pytest.mark.slow
def test_ingested_translations_reach_the_facts(
    settings: RetrievalSettings, minilm: Any, write_jsonl: Callable[..., Path]
) -> None:
    with CatalogStore.open(settings, minilm, writer=True) as store:
        ingest_file(write_jsonl([ROW]), store)
        facts = Retriever(store).facts("a cup", ProductHint(sku="MUG-1"))
    assert facts and facts[0].fields["i18n.de.title"] == "Espressotasse"
    assert facts[0].fields["i18n.fr-FR.attributes.capacity"] == "90"
