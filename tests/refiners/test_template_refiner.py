"""The template refiner: captions composed from templates, the draft's subject and the catalog's own (localized)
facts; grounded by construction, and honest (review with the reason) when a locale lacks the data."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import pytest

from caption_agent.errors import ConfigError
from caption_agent.policies import ModerationContext, PolicyEngine
from caption_agent.prompts import list_styles, load_preset
from caption_agent.refiners import REFINERS, RefineJob
from caption_agent.refiners.chain import CannotComposeError
from caption_agent.refiners.subject import load_lexicon, read_subject, subject_from
from caption_agent.refiners.template import TemplateRefiner, load_template
from caption_agent.retrieval.product import Product
from caption_agent.retrieval.retriever import product_facts
from caption_agent.schemas import DraftSubject

ROOT = Path(__file__).resolve().parents[2]
CATALOG = [Product.model_validate(json.loads(line)) for line in (ROOT / "examples" / "catalog.jsonl").open()]


def _facts(sku: str, locale: str = "en-US"):
    return product_facts(next(p for p in CATALOG if p.sku == sku), 0.9)


def _job(style: str, locale: str, draft: str = "An espresso.", sku: str | None = "MUG-001", **kw):
    return RefineJob(
        preset=load_preset(style), draft=draft, locale=locale, facts=_facts(sku, locale) if sku else [], **kw
    )


@pytest.fixture(scope="module")
def refiner():
    return TemplateRefiner()


@pytest.fixture(scope="module")
def engine():
    return PolicyEngine.load(None)


def test_registered_and_built_from_its_section(refiner):
    built = REFINERS.build("template", {})
    assert built.name == "template" and built.deterministic and "lexicon" in built.model_id


@pytest.mark.parametrize(
    ("locale", "title", "attribute"),
    [
        ("en-US", "Hollowell Espresso Cup.", "capacity: 90 ml"),
        ("de-DE", "Hollowell Espressotasse.", "Fassungsvermögen: 90 ml"),
        ("fr-FR", "Tasse à espresso Hollowell.", "contenance : 90 ml"),
        ("es-ES", "Taza de café expreso Hollowell.", "capacidad: 90 ml"),
    ],
)
def test_product_copy_in_the_catalogs_own_words(refiner, locale, title, attribute):
    out = refiner.refine(_job("seo_product", locale))
    assert out.caption.startswith(title) and attribute.lower() in out.caption.lower() and len(out.caption) <= 300
    assert {"MUG-001:title", "MUG-001:description", "MUG-001:attributes.capacity"} <= set(out.facts_used)


def test_facts_are_chosen_by_priority_to_fit_the_budget(refiner):
    full = refiner.refine(_job("seo_product", "de-DE")).caption
    short = refiner.refine(_job("seo_product", "de-DE", max_chars=60)).caption
    assert len(short) <= 60 < len(full) and short.startswith("Hollowell Espressotasse.")
    with pytest.raises(CannotComposeError, match="does not fit"):
        refiner.refine(_job("seo_product", "de-DE", max_chars=12))


def test_an_attribute_the_text_already_states_is_not_repeated(refiner):
    text = refiner.refine(_job("seo_product", "en-US")).caption
    assert text.count("matte black") == 1 and "Capacity: 90 ml" in text
    helmet = refiner.refine(_job("seo_product", "en-US", sku="HELMET-MX1")).caption
    assert "size: M" in helmet  # a one-letter value is not "said" by every word with an m in it


def test_a_locale_without_data_is_refused_with_the_reason_and_the_fix(refiner, tmp_path):
    # the sample catalog has en, de, fr and es text: Italian has templates but no catalog text
    with pytest.raises(CannotComposeError, match="catalog has no it-IT text for MUG-001") as info:
        refiner.refine(_job("seo_product", "it-IT"))
    assert "add i18n.it-IT" in info.value.reason
    # the bundled templates have no Korean version
    with pytest.raises(CannotComposeError, match="template has no 'ko' version") as info:
        refiner.refine(_job("seo_product", "ko-KR"))
    assert "add a `ko:` section to prompts/compose/seo_product.yaml" in info.value.reason
    (tmp_path / "seo_product.yaml").write_text(
        "preset: seo_product\nlanguages:\n  ko:\n    pieces:\n      - {text: ['{title}.'], required: true}\n",
        encoding="utf-8",
    )
    korean = REFINERS.build("template", {"templates_dir": str(tmp_path)})
    with pytest.raises(CannotComposeError, match="catalog has no ko-KR text for MUG-001"):
        korean.refine(_job("seo_product", "ko-KR"))


def test_product_copy_needs_facts(refiner):
    with pytest.raises(CannotComposeError, match="no catalog facts"):
        refiner.refine(_job("seo_product", "de-DE", sku=None))


@pytest.mark.parametrize(
    ("locale", "expected"),
    [
        ("de-DE", "Eine Person mit einem Bob."),
        ("fr-FR", "Une personne avec un bobsleigh."),
        ("es-ES", "Una persona con un bobsleigh."),
    ],
)
def test_the_drafts_subject_named_from_the_lexicon(refiner, locale, expected):
    job = _job("dataset_recaption", locale, draft="A person with a bobsled in a mostly light grey scene.", sku=None)
    assert refiner.refine(job).caption == expected


def test_a_subject_the_lexicon_lacks_is_never_guessed(refiner):
    job = _job("dataset_recaption", "de-DE", draft="A zorbing ball.", sku=None)
    with pytest.raises(CannotComposeError, match="no de name for 'zorbing ball'"):
        refiner.refine(job)
    with pytest.raises(CannotComposeError, match="could not be read"):
        refiner.refine(replace(job, draft="Probably a cat or a dog."))


def test_english_captions_may_say_the_draft_itself(refiner):
    job = _job("alt_text", "en-US", draft="An espresso in a mostly brown scene.")
    assert refiner.refine(job).caption == "An espresso in a mostly brown scene. Hollowell Espresso Cup."


def test_the_structured_subject_wins_over_parsing(refiner):
    subject = DraftSubject(name="a person", people=1, context=["a jersey"])
    job = _job("dataset_recaption", "fr-FR", draft="A person in a jersey in a mostly black scene.", sku=None)
    assert refiner.refine(replace(job, subject=subject)).caption == "Une personne portant un maillot."
    scene = replace(job, draft="A mostly grey scene.", subject=DraftSubject())
    with pytest.raises(CannotComposeError, match="named no subject"):
        refiner.refine(scene)


def test_masked_or_neutralised_text_is_left_out(refiner):
    facts = _facts("MUG-INJ", "de-DE")
    cleaned = [
        f.model_copy(
            update={"fields": {k: re.sub(r"Ignoriere.*$", "[instruction removed]", v) for k, v in f.fields.items()}}
        )
        for f in facts
    ]
    job = RefineJob(preset=load_preset("seo_product"), draft="A cup.", locale="de-DE", facts=cleaned)
    text = refiner.refine(job).caption
    assert "Ein hoher Latte-Becher aus Keramik in Meerblau." in text and "[" not in text and "BUY NOW" not in text


@pytest.mark.parametrize("locale", ["en-US", "de-DE", "fr-FR", "es-ES"])
def test_every_sample_product_caption_passes_grounding_by_construction(refiner, engine, locale):
    for product in CATALOG:
        facts = _facts(product.sku, locale)
        job = RefineJob(preset=load_preset("seo_product"), draft="A thing.", locale=locale, facts=facts)
        text = refiner.refine(job).caption
        title = product.title if locale == "en-US" else product.i18n[locale].title
        assert text.startswith(f"{title}."), (product.sku, locale, text)  # the catalog's own text in that locale
        ctx = ModerationContext(preset=job.preset, locale=locale, draft=job.draft, facts=facts, faces=0)
        prepared, _, _ = engine.prepare_inputs(facts, "", ctx)
        ctx.facts = prepared
        outcome = engine.review(refiner.refine(replace(job, facts=prepared)).caption, ctx, only={"grounding"})
        assert outcome.action == "allow", (product.sku, locale, text, [d.reason for d in outcome.decisions])


def test_every_bundled_preset_has_a_template_in_four_languages():
    for name in list_styles():
        template = load_template(name)
        assert template is not None and {"en", "de", "fr", "es"} <= set(template.languages), name


def test_a_user_template_folder_overrides_and_is_validated(tmp_path):
    (tmp_path / "alt_text.yaml").write_text(
        "preset: alt_text\nlanguages:\n  de:\n    pieces:\n      - {text: ['Zu sehen: {subject}.'], required: true}\n",
        encoding="utf-8",
    )
    refiner = REFINERS.build("template", {"templates_dir": str(tmp_path)})
    assert refiner.refine(_job("alt_text", "de-DE", sku=None)).caption == "Zu sehen: ein Espresso."
    (tmp_path / "social.yaml").write_text("preset: social\nlanguages: {}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="compose template"):
        refiner.refine(_job("social", "de-DE", sku=None))
    with pytest.raises(ConfigError, match="not a folder"):
        REFINERS.build("template", {"templates_dir": str(tmp_path / "missing")})
    with pytest.raises(ConfigError, match="lexicon"):
        REFINERS.build("template", {"lexicon": str(tmp_path / "alt_text.yaml")})


def test_the_lexicon_covers_the_lite_drafters_vocabulary():
    lexicon = load_lexicon()
    table = (ROOT / "agent" / "drafters" / "data" / "basic_level.tsv").read_text(encoding="utf-8")
    names = [re.sub(r"^an? ", "", line.split("\t")[1]) for line in table.splitlines() if line and line[0] != "#"]
    for lang in ("de", "fr", "es"):
        missing = [n for n in names if lexicon.noun(n, lang, "nom") is None]
        assert len(missing) <= 3, (lang, missing)  # a few are left out on purpose (see lexicon.yaml)
    assert lexicon.noun("espresso", "de", "nom") == "ein Espresso" and lexicon.noun("eagle", "es", "nom") == "un águila"


@pytest.mark.parametrize(
    ("draft", "people", "thing", "link"),
    [
        ("An espresso.", "", "espresso", "with"),
        ("A close-up of a daisy.", "", "daisy", "with"),
        ("An Egyptian cat in brown and grey tones.", "", "Egyptian cat", "with"),
        ("A person with a bobsled in a mostly light grey scene.", "a person", "bobsled", "with"),
        ("Two people in a uniform.", "two people", "uniform", "in"),
        ("A cup of coffee against a white background.", "", "cup of coffee", "with"),
    ],
)
def test_reading_the_subject_of_lite_drafts(draft, people, thing, link):
    subject = read_subject(draft)
    assert subject is not None and (subject.people, subject.thing, subject.link) == (people, thing, link)


@pytest.mark.parametrize("draft", ["A cat or a dog.", "Probably a cat.", "Some cups on a table, maybe three."])
def test_anything_else_is_not_read(draft):
    assert read_subject(draft) is None and subject_from(None, draft) is None
