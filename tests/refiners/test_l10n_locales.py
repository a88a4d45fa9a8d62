"""Every locale the catalog speaks: product copy and alt text in it/pt/nl/pl/sv/ja/zh besides en/de/fr/es from
the localization catalog (examples/catalog_l10n.jsonl), CJK typography, locale fallbacks as data and recorded,
short languages' minimums, the glossary's prescribed renderings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from caption_agent.config import TemplateRefinerSettings
from caption_agent.glossary import load_glossary
from caption_agent.locales import normalize_locale
from caption_agent.policies import PolicyEngine
from caption_agent.prompts import load_preset
from caption_agent.refiners import RefineJob
from caption_agent.refiners.chain import CannotComposeError
from caption_agent.refiners.template import TemplateRefiner
from caption_agent.retrieval.product import Product
from caption_agent.retrieval.retriever import product_facts
from caption_agent.schemas import DraftSubject
from caption_agent.stages.refine import refine
from caption_agent.state import CaptionState

ROOT = Path(__file__).resolve().parents[2]
CATALOG = {
    p.sku: p
    for p in (Product.model_validate(json.loads(line)) for line in (ROOT / "examples" / "catalog_l10n.jsonl").open())
}
GLOSSARY = load_glossary(ROOT / "examples" / "glossary_l10n.yaml")
LOCALES = ["de-DE", "fr-FR", "es-ES", "it-IT", "pt-BR", "nl-NL", "pl-PL", "sv-SE", "ja-JP", "zh-CN"]


@pytest.fixture(scope="module")
def refiner():
    return TemplateRefiner()


def _job(style: str, locale: str, sku: str = "NV-KTL-01", draft: str = "A kettle.", **kw):
    facts = product_facts(CATALOG[sku], 0.9)
    return RefineJob(preset=load_preset(style), draft=draft, locale=normalize_locale(locale), facts=facts, **kw)


@pytest.mark.parametrize("locale", LOCALES)
def test_product_copy_in_every_locale_the_catalog_speaks(refiner, locale):
    texts = CATALOG["NV-KTL-01"].i18n[normalize_locale(locale)]
    out = refiner.refine(_job("seo_product", locale))
    assert out.caption.startswith(texts.title) and texts.description[:12] in out.caption
    assert "NV-KTL-01:attributes.capacity" in out.facts_used
    alt = refiner.refine(_job("alt_text", locale)).caption
    assert alt.endswith(texts.title + ("。" if locale[:2] in ("ja", "zh") else "."))


def test_cjk_sentences_join_without_spaces_and_keep_full_width_punctuation(refiner):
    ja = refiner.refine(_job("seo_product", "ja-JP")).caption
    assert ja.startswith("Nordvik 電気ケトル。水量窓") and "容量：1.5\u00a0L、" in ja and ja.endswith("。")
    zh = refiner.refine(_job("alt_text", "zh-CN")).caption
    assert zh == "水壶。Nordvik 电热水壶。"


def test_locale_fallbacks_are_data_and_recorded(refiner):
    out = refiner.refine(_job("seo_product", "de-AT"))
    assert out.caption.startswith("Nordvik Wasserkocher.")
    assert out.notes == ["locale: de-AT written from the catalog's de-DE text for NV-KTL-01 (fallback)"]
    with pytest.raises(CannotComposeError, match="written for pt-BR") as info:  # pt-PT never falls to pt-BR
        refiner.refine(_job("seo_product", "pt-PT"))
    assert "`pt-PT: [pt-BR]` under fallbacks" in info.value.reason


def test_a_configured_fallback_serves_and_a_missing_locale_says_what_to_add(tmp_path):
    (tmp_path / "locales.yaml").write_text("fallbacks:\n  pt-PT: [pt-BR]\nstrict: [pt]\nwritten_for: {pt: pt-BR}\n")
    configured = TemplateRefiner(TemplateRefinerSettings(templates_dir=tmp_path))
    out = configured.refine(_job("seo_product", "pt-PT"))
    assert out.caption.startswith("Chaleira elétrica Nordvik.") and "pt-BR text" in out.notes[0]
    with pytest.raises(CannotComposeError, match=r"no ko-KR text|no 'ko' version"):
        configured.refine(_job("seo_product", "ko-KR"))


def test_the_glossary_prescribes_the_merchants_word(refiner):
    job = _job("alt_text", "de-DE", sku="NV-MUG-01", draft="A cup.", subject=DraftSubject(name="a cup"))
    assert refiner.refine(job).caption == "Eine Tasse. Nordvik Steinzeug-Becher."  # the lexicon alone
    assert refiner.refine(_with(job, glossary=GLOSSARY)).caption == "Ein Becher. Nordvik Steinzeug-Becher."


def _with(job: RefineJob, **kw) -> RefineJob:
    from dataclasses import replace

    return replace(job, **kw)


@pytest.mark.parametrize(
    ("locale", "noun", "expected"),
    [("fr-FR", "cat", "Un chat."), ("es-ES", "cat", "Un gato."), ("pl-PL", "cat", "Kot."), ("ja-JP", "cat", "猫。")],
)
def test_short_natural_captions_are_published(locale, noun, expected):
    """dataset_recaption (no facts): "Un chat." is whole and natural, not held for being under 10 characters."""
    preset = load_preset("dataset_recaption")
    item = CaptionState(
        key=None,
        style_name=preset.name,
        locale=locale,
        preset=preset,
        source=f"A {noun}.",
        source_subject=DraftSubject(name=f"a {noun}"),
        faces=0,
        draft_ok=False,
    )
    refine(TemplateRefiner(), PolicyEngine.load(), [item], max_regenerations=1)
    assert item.outcome is not None and item.outcome.action == "allow" and item.text == expected, item.decisions
