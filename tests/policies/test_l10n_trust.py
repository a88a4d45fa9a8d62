"""Trust rules read localized captions as a merchant writes them (issue #28 shortfalls): the lexicon's synonyms,
its broader entries and plurals keep the draft's subject; a short caption in the locale's own words is in the
locale's language whatever a detector misreads; what names another subject or another language is still held."""

from __future__ import annotations

import pytest

from caption_agent.policies.rules import vocabulary as vocab
from caption_agent.refiners.subject import load_lexicon
from caption_agent.schemas import GroundingFact


def fired(outcome) -> dict[str, str]:
    return {d.rule: d.action for d in outcome.decisions if d.action != "allow"}


def _codes(outcome) -> dict[str, str]:
    return {d.rule: str(d.details.get("code", "")) for d in outcome.decisions if d.action != "allow"}


@pytest.mark.parametrize(
    "locale, draft, caption",
    [
        ("de-DE", "A kettle.", "Nordvik Wasserkocher. Ein leiser Wasserkocher mit Wasserstandsanzeige."),  # synonym
        ("de-DE", "A table lamp.", "Fjordlys Stehleuchte. Eine schlanke Stehleuchte."),  # broader "lamp", Leuchte
        ("es-ES", "A table lamp.", "Lámpara de pie Fjordlys. Una lámpara de pie estilizada."),  # broader "lamp"
        ("zh-CN", "A table lamp.", "Fjordlys 落地灯。纤细的落地灯，提供柔和的阅读光线。"),  # broader "lamp": 灯
        ("fr-FR", "A glove.", "Gants de moto en cuir Redline. Des gants de moto courts en cuir."),  # plural
        ("de-DE", "A glove.", "Redline Motorradhandschuhe aus Leder. Kurze Handschuhe aus Leder."),  # plural head
        ("fr-FR", "A bowl.", "Saladier Nordvik. Un large saladier à l'émail réactif."),  # a salad bowl is a bowl
        ("en-US", "A backpack.", "TrailMate Daypack. A light daypack with a padded back and a rain cover."),
    ],
)
def test_synonyms_broader_names_and_plurals_keep_the_subject(engine, make_ctx, locale, draft, caption):
    out = engine.review(caption, make_ctx(draft=draft, locale=locale, preset="seo_product", attempts_left=0))
    assert "faithful" not in fired(out), out.decisions


@pytest.mark.parametrize(
    "locale, draft, caption",
    [
        ("fr-FR", "A table lamp.", "Lampadaire Fjordlys. Un lampadaire fin qui diffuse une douce lumière."),
        ("zh-CN", "A bottle.", "Nordvik 花瓶。手工吹制的高玻璃花瓶。"),  # a vase: 瓶 alone is no bottle
        ("de-DE", "A kettle.", "Nordvik Teekanne. Eine klare Teekanne aus Glas."),
        ("it-IT", "A bottle.", "Sciarpa Nordvik. Una sciarpa morbida di lana merino."),
    ],
)
def test_another_subject_is_still_held(engine, make_ctx, locale, draft, caption):
    out = engine.review(caption, make_ctx(draft=draft, locale=locale, preset="seo_product", attempts_left=0))
    assert _codes(out).get("faithful") == "subject.changed", out.decisions


def test_plural_forms_follow_the_head_word():
    assert "handschuhe" in vocab.plural_forms("handschuh", "de")
    assert "lampes de table" in vocab.plural_forms("lampe de table", "fr")
    assert "kubki" in vocab.plural_forms("kubek", "pl")
    assert vocab.plural_forms("台灯", "zh") == ["台灯"]


def test_broader_entries_are_specific_wordnet_hypernyms():
    assert "lamp" in vocab.broader("table lamp")
    assert "table lamp" not in vocab.broader("lamp")
    assert not {"object", "artifact", "whole"} & set(vocab.broader("bottle"))


def test_every_synonym_belongs_to_a_lexicon_noun_and_a_lexicon_language():
    """Synonyms widen what the faithful rule accepts for a name the lexicon has; they never name a new subject."""
    lexicon = load_lexicon()
    for name, by_lang in vocab.data()["synonyms"].items():
        assert name in lexicon.nouns, f"synonyms.{name}: not a noun of prompts/compose/lexicon.yaml"
        for lang, names in by_lang.items():
            assert lang == "en" or lang in lexicon.nouns[name], f"synonyms.{name}.{lang}: the lexicon has no name"
            assert names and all(n.strip() for n in names)


def _poster_facts() -> list[GroundingFact]:
    fields = {
        "title": "Astronaut Portrait Poster",
        "locale": "en-US",
        "i18n.fr-FR.title": "Affiche portrait d'astronaute",
        "i18n.de-DE.title": "Nordvik Glasvase",
        "i18n.de-DE.description": "Glasvase: eine hohe, mundgeblasene Vase aus Glas.",
    }
    return [GroundingFact(id="P:title", sku="P", field="title", text=fields["title"], score=0.9, fields=fields)]


def test_the_locales_own_product_name_carries_no_language(engine, make_ctx):
    """langdetect reads "Une affiche. Affiche portrait d'astronaute." as English (p=0.86): the fr title is a name,
    left out like the English one, and the rest is short and in the fr lexicon."""
    ctx = make_ctx(draft="A poster.", locale="fr-FR", preset="alt_text", facts=_poster_facts(), attempts_left=0)
    assert "language" not in fired(engine.review("Une affiche. Affiche portrait d'astronaute.", ctx))


def test_a_short_caption_in_the_locales_own_words_passes_a_misreading(engine, make_ctx):
    """langdetect reads this German as Estonian (p=1.00); every word is the lexicon's or the de-DE fields'."""
    from caption_agent.policies.rules.language import detect

    caption = "Eine Vase. Glasvase. Eine hohe, mundgeblasene Vase aus Glas."
    assert detect(caption)[0][0] == "et"
    ctx = make_ctx(draft="A vase.", locale="de-DE", preset="social", facts=_poster_facts(), attempts_left=0)
    assert "language" not in fired(engine.review(caption, ctx))


def test_a_short_caption_in_another_language_is_still_held(engine, make_ctx):
    ctx = make_ctx(draft="A vase.", locale="de-DE", preset="social", facts=_poster_facts(), attempts_left=0)
    out = engine.review("A tall vase of blown glass, made by hand for flowers.", ctx)
    assert _codes(out).get("language") in ("language.wrong", "language.unverified"), out.decisions
