"""The trust rules on the real default policy: informative (what the preset requires), faithful (the draft's subject
kept, no unsupported object), coherence (degenerate or cut-off text) and the language rule's short-text check.

The captions are the failures seen on real photos (issue #24): colour-only alt text, SmolLM2's hyphen chains,
placeholders and German nonsense, product copy that does not name the product."""

from __future__ import annotations

import pytest

from caption_agent.schemas import GroundingFact


def fact(text: str, sku: str = "SKU1", **fields: str) -> GroundingFact:
    return GroundingFact(id=f"{sku}:text", sku=sku, field="text", text=text, score=0.9, fields=fields)


def fired(outcome) -> dict[str, str]:
    return {d.rule: d.action for d in outcome.decisions if d.action != "allow"}


def _codes(outcome) -> dict[str, str]:
    return {d.rule: d.details.get("code", "") for d in outcome.decisions if d.action != "allow"}


@pytest.mark.parametrize(
    "draft, caption",
    [
        ("A mostly navy scene.", "A mostly navy scene."),  # a kite in a blue sky: colours only
        ("A mostly orange scene.", "A mostly orange scene."),
        ("A close-up in grey and dark brown tones.", "A close-up in grey and dark brown tones."),
    ],
)
def test_alt_text_of_colours_alone_is_held_with_the_reason(engine, make_ctx, draft, caption):
    outcome = engine.review(caption, make_ctx(draft=draft, attempts_left=0, is_fallback=True))
    assert outcome.action == "review"
    assert _codes(outcome)["informative"] == "subject.unnamed"


@pytest.mark.parametrize(
    "draft, caption",
    [
        ("A cat on a sofa.", "A cat on a sofa."),
        ("An espresso in a white cup.", "An espresso in a white cup."),
        (
            "A person with a bobsled in a mostly light grey scene.",
            "A person with a bobsled in a mostly light grey scene.",
        ),
        ("A close-up of a daisy.", "A close-up of a daisy."),
        # A colour word is the fruit after an article (the trust set's "orange" photo was held before).
        ("An orange in dark grey and olive tones.", "An orange in dark grey and olive tones."),
    ],
)
def test_named_subjects_are_published(engine, make_ctx, draft, caption):
    outcome = engine.review(caption, make_ctx(draft=draft, attempts_left=0, is_fallback=True))
    assert "informative" not in fired(outcome) and "faithful" not in fired(outcome)
    assert "coherence" not in fired(outcome), outcome.decisions


def test_a_subject_the_refiner_invents_for_a_colour_only_draft_is_not_a_subject(engine, make_ctx):
    # SmolLM2 on the trust set's "Storm" photo (a colour-only draft, no facts), published before.
    caption = "The scene is mostly dark grey, with a few scattered light sources."
    outcome = engine.review(caption, make_ctx(draft="A mostly dark grey scene.", attempts_left=0))
    assert outcome.action == "review" and _codes(outcome)["informative"] == "subject.unnamed"


def test_a_scene_word_names_a_landscape(engine, make_ctx):
    ctx = make_ctx(draft="A beach in blue and white tones.", attempts_left=0)
    assert "informative" not in fired(engine.review("A beach in blue and white tones.", ctx))


def test_product_copy_with_a_sku_must_name_the_product(engine, make_ctx):
    facts = [fact("Espresso Cup and Saucer, ceramic, 350 ml.", sku="MUG-1", title="Espresso Cup and Saucer")]
    ctx = make_ctx(draft="A motorcycle in grey and dark brown tones.", preset="seo_product", facts=facts, sku="MUG-1")
    ctx.attempts_left, ctx.is_fallback = 0, True
    outcome = engine.review("A motorcycle in grey and dark brown tones.", ctx)
    assert outcome.action == "review" and _codes(outcome)["informative"] == "product.unnamed"
    named = engine.review(
        "Espresso Cup and Saucer. A ceramic cup that holds 350 ml.",
        make_ctx(draft="A cup.", preset="seo_product", facts=facts, sku="MUG-1", attempts_left=0),
    )
    assert "informative" not in fired(named)


def test_an_llm_caption_that_changes_the_subject_is_held(engine, make_ctx):
    outcome = engine.review("A dog sleeping.", make_ctx(draft="A cat.", attempts_left=0))
    assert _codes(outcome)["faithful"] == "subject.changed"
    kept = engine.review("An animal resting.", make_ctx(draft="A cat.", attempts_left=0))  # a hypernym keeps it
    assert "faithful" not in fired(kept)


def test_an_object_nothing_supports_is_held(engine, make_ctx):
    outcome = engine.review("A cat next to a laptop.", make_ctx(draft="A cat.", attempts_left=0))
    assert _codes(outcome)["faithful"] == "object.unsupported"
    supported = make_ctx(draft="A cat.", facts=[fact("A laptop stand for 13-inch laptops.")], attempts_left=0)
    assert "faithful" not in fired(engine.review("A cat next to a laptop.", supported))


def test_german_caption_must_carry_the_lexicon_name_of_the_subject(engine, make_ctx):
    good = engine.review("Eine Katze.", make_ctx(draft="A cat.", locale="de-DE", attempts_left=0))
    assert "faithful" not in fired(good) and "language" not in fired(good), good.decisions
    # SmolLM2's answer for a flower (issue #24): no name of the draft's subject, words no lexicon knows.
    bad = engine.review("Die große Köpfe.", make_ctx(draft="A close-up of a daisy.", locale="de-DE", attempts_left=0))
    assert bad.action == "review"
    assert _codes(bad)["faithful"] == "subject.changed" and _codes(bad)["language"] == "language.unverified"


@pytest.mark.parametrize(
    "caption, code",
    [
        ("Alison-Laflin-Sabr-Cup-Hollowell-Danish-Fuze cat.", "text.degenerate"),
        ("<the caption>", "text.placeholder"),
        (",<story text", "text.placeholder"),  # SmolLM2 on the trust set's "Wood" photo, published before
        (", a cat on a mat.", "text.degenerate"),
        ("A cat on a mat, a cat on a mat.", "text.degenerate"),
        ("A cat on a mat. A cat on a mat.", "text.degenerate"),
        ("A cat. Use only what the draft and the facts say.", "text.prompt_echo"),
        ("A cat sitting on the", "text.cut_off"),
        ("A cat sitting on a mat with a", "text.cut_off"),
        ("A cat sitting on a mat, its tail...", "text.cut_off"),
        ("A cat sitting on a mat and", "text.cut_off"),
        ("Questions? A cat on a mat.", "text.dangling"),
    ],
)
def test_degenerate_or_cut_off_text_is_held(engine, make_ctx, caption, code):
    outcome = engine.review(caption, make_ctx(draft="A cat on a mat.", attempts_left=0))
    assert outcome.action in ("review", "block")
    assert _codes(outcome).get("coherence") == code, outcome.decisions


def test_a_caption_ending_on_a_number_is_not_cut_off(engine, make_ctx):
    """A caption may end on a number: "Set of 4." is whole (issue #28: the alt text of SAUCER-SET-4 was held)."""
    ctx = make_ctx(draft="A cup.", attempts_left=0)
    assert "coherence" not in fired(engine.review("A cup. Hollowell Saucer Set of 4.", ctx))
    assert _codes(engine.review("A cup of", ctx)).get("coherence") == "text.cut_off"


def test_social_hashtags_after_the_sentence_are_whole(engine, make_ctx):
    ctx = make_ctx(draft="An espresso.", preset="social", attempts_left=0)
    outcome = engine.review("An espresso to start the day. #coffee", ctx)
    assert "coherence" not in fired(outcome), outcome.decisions


def test_a_preset_requires_block_is_validated(tmp_path):
    from caption_agent.errors import ConfigError
    from caption_agent.prompts import list_styles

    (tmp_path / "mine.yaml").write_text(
        "name: mine\ndescription: x\nmax_chars: 100\ninstructions: x\nrequires: {subject: true, colour: true}\n"
    )
    with pytest.raises(ConfigError, match="colour"):
        list_styles(tmp_path)
    styles = list_styles()
    assert styles["alt_text"].requires.subject and styles["seo_product"].requires.product_name == "with_sku"


def test_one_text_in_many_places_is_cleaned_and_recorded_once(engine, make_ctx):
    fields = {"title": "Nordic Mug", "description": "A white mug. Questions? Email help@nordic.example."}
    facts = [
        GroundingFact(id=f"M1:{k}", sku="M1", field=k, text=v, score=0.9, fields=fields) for k, v in fields.items()
    ]
    _, _, decisions = engine.prepare_inputs(facts, "", make_ctx(preset="seo_product"))
    pii = [d for d in decisions if d.rule == "pii"]
    assert len(pii) == 1, pii  # one email, one decision, every place it was found listed
    assert set(pii[0].details["sources"]) == {"fact M1:description", "fact M1 field description"}


def test_a_sentence_emptied_by_a_removal_is_left_out_by_the_template_and_held_elsewhere(engine, make_ctx):
    from caption_agent.prompts import load_preset
    from caption_agent.refiners.base import RefineJob
    from caption_agent.refiners.template import TemplateRefiner

    fields = {
        "title": "Nordic Mug",
        "description": "A white stoneware mug for tea and coffee. Questions? [email].",
        "attributes.color": "white",
    }
    facts = [
        GroundingFact(id=f"M1:{k}", sku="M1", field=k, text=v, score=0.9, fields=fields) for k, v in fields.items()
    ]
    job = RefineJob(preset=load_preset("seo_product"), draft="A cup.", facts=facts)
    text = TemplateRefiner().refine(job).caption
    assert "Questions" not in text and text.startswith("Nordic Mug. A white stoneware mug")
    held = engine.review("Nordic Mug. Questions? Color: white.", make_ctx(preset="seo_product", attempts_left=0))
    assert _codes(held).get("coherence") == "text.dangling"


@pytest.mark.parametrize(
    "locale, caption",
    [
        ("de-DE", "Hollowell Espressotasse. Eine kleine Espressotasse aus mattschwarzem Steinzeug."),
        ("sv-SE", "Nordvik emaljmugg. En lätt emaljmugg för camping och trädgården."),
        ("ja-JP", "Nordvik 炻器マグカップ。持ち手が広い丈夫な炻器のマグカップです。"),
        ("zh-CN", "Nordvik 炻器马克杯。结实的炻器马克杯，手柄宽大。"),
    ],
)
def test_faithful_finds_the_subject_in_compounds_and_unspaced_scripts(engine, make_ctx, locale, caption):
    """The lexicon's name as a compound's head (de Tasse, sv mugg) or inside unspaced text (ja, zh) is the subject
    kept (issue #28: every Japanese and Chinese product copy was held)."""
    draft = "A cup." if locale == "de-DE" else "A mug."
    out = engine.review(caption, make_ctx(draft=draft, locale=locale, preset="seo_product"))
    assert "faithful" not in fired(out), out.decisions


@pytest.mark.parametrize(
    "locale, caption",
    [
        ("de-DE", "Hollowell Untersetzer. Ein kleiner Untersetzer aus mattschwarzem Steinzeug."),
        ("ja-JP", "Nordvik 炻器の皿。丈夫な炻器の皿です。"),
        ("sv-SE", "Nordvik skål. En lätt skål för camping och trädgården."),
    ],
)
def test_faithful_still_holds_another_subject_in_those_languages(engine, make_ctx, locale, caption):
    draft = "A cup." if locale == "de-DE" else "A mug."
    out = engine.review(caption, make_ctx(draft=draft, locale=locale, preset="seo_product", attempts_left=0))
    assert _codes(out).get("faithful") == "subject.changed", out.decisions


def _sv_mug_facts() -> list[GroundingFact]:
    fields = {
        "title": "Nordvik Stoneware Mug",
        "brand": "Nordvik",
        "locale": "en-US",
        "description": "A sturdy stoneware mug with a wide handle. Dishwasher safe.",
        "i18n.sv-SE.title": "Nordvik mugg i stengods",
        "i18n.sv-SE.description": "En stadig mugg i stengods med ett brett handtag. Tål diskmaskin.",
        "i18n.sv-SE.attributes.color": "sand",
    }
    return [
        GroundingFact(id="NV:text", sku="NV", field="description", text=fields["description"], score=0.9, fields=fields)
    ]


def test_language_accepts_a_close_language_reading_when_every_word_is_the_locales(engine, make_ctx):
    """langdetect reads this Swedish product copy as Norwegian (p≈1); its words are the sv catalog fields', the
    lexicon's and the template's, so it is Swedish (issue #28: 5 sv-SE holds on catalog_l10n)."""
    from caption_agent.policies.rules.language import detect

    caption = "Nordvik mugg i stengods. En stadig mugg i stengods med ett brett handtag. Tål diskmaskin. Färg: sand."
    assert detect(caption)[0][0] == "nb"
    ctx = make_ctx(draft="A mug.", locale="sv-SE", preset="seo_product", facts=_sv_mug_facts(), attempts_left=0)
    assert "language" not in fired(engine.review(caption, ctx))


def test_language_still_holds_real_norwegian_for_sv(engine, make_ctx):
    """Norwegian words the Swedish sources do not write ("kopp", "steintøy", "oppvaskmaskin") keep the hold; the
    other locales' catalog fields do not count as Swedish words."""
    caption = "Nordvik kopp i steintøy. En solid kopp i steintøy med et bredt håndtak. Tåler oppvaskmaskin godt."
    ctx = make_ctx(draft="A mug.", locale="sv-SE", preset="seo_product", facts=_sv_mug_facts(), attempts_left=0)
    assert _codes(engine.review(caption, ctx)).get("language") == "language.wrong"


@pytest.mark.parametrize(
    "locale, caption, held",
    [
        ("es-ES", "Una botella de acero para todo el día. Mantiene el agua fría.", False),
        ("pt-BR", "Uma garrafa de aço para o dia todo. Mantém a água gelada.", False),
    ],
)
def test_todo_is_a_placeholder_only_as_the_upper_case_marker(engine, make_ctx, locale, caption, held):
    ctx = make_ctx(draft="A bottle.", locale=locale, preset="seo_product", attempts_left=0)
    assert (_codes(engine.review(caption, ctx)).get("coherence") == "text.placeholder") is held


def test_short_text_check_knows_the_formatters_unit_names(engine, make_ctx):
    """zh-CN quantities are written "0,35 升" by the locale formatter (CLDR): 升 is no foreign word."""
    from caption_agent.formats import format_quantity
    from caption_agent.policies.rules import vocabulary as vocab

    assert "升" in format_quantity("0.35 l", "zh-CN") and "升" in vocab.unit_words("zh")
    caption = f"马克杯。容量：{format_quantity('0.35 l', 'zh-CN')}。"
    out = engine.review(caption, make_ctx(draft="A mug.", locale="zh-CN", preset="alt_text", attempts_left=0))
    assert _codes(out).get("language") != "language.unverified", out.decisions


def test_the_english_title_alone_is_no_caption_in_another_language(engine, make_ctx):
    """SmolLM2 answered a ja-JP request with the English title; its words are catalog words, but not the ja-JP
    fields' (issue #28 vLLM run)."""
    fields = {
        "title": "Nordvik Stoneware Mug",
        "brand": "Nordvik",
        "locale": "en-US",
        "i18n.ja-JP.title": "Nordvik 炻器マグカップ",
    }
    facts = [GroundingFact(id="NV:title", sku="NV", field="title", text=fields["title"], score=0.9, fields=fields)]
    ctx = make_ctx(draft="A mug.", locale="ja-JP", preset="alt_text", facts=facts, attempts_left=0)
    assert _codes(engine.review("Nordvik Stoneware Mug", ctx)).get("language") == "language.unverified"
    assert "language" not in fired(engine.review("マグカップ。Nordvik 炻器マグカップ。", ctx))


def _hedged_subject(name: str, mass: float, people: int = 0):
    """The lite drafter's subject for a classifier that puts ``mass`` on ``name``'s classes (the rest spread evenly)."""
    import numpy as np

    from caption_agent.drafters.hedging import hedge, hierarchy
    from caption_agent.drafters.lite import subject_of

    tree = hierarchy()
    wnid = next(w for w, p in tree.phrases.items() if p == name)
    inside = tree.leaves[wnid]
    probs = np.full(len(tree.classes), (1 - mass) / (len(tree.classes) - len(inside)))
    probs[inside] = mass / len(inside)
    hedged = hedge(probs)
    assert hedged.subject is not None and hedged.subject.synset == wnid
    return subject_of(hedged, people, 0.3, tree, tree.required(wnid, 0.5, 0.4))


@pytest.mark.parametrize("mass, held", [(0.58, True), (0.80, False)])
def test_a_subject_the_drafter_named_only_just_is_held_as_unsure(engine, make_ctx, mass, held):
    from caption_agent.policies.reasons import hold_reasons

    subject = _hedged_subject("a helmet", mass)  # "a helmet" for graffiti: 0.58 against 0.54 needed
    assert 0.53 < subject.required < 0.55
    caption = "A helmet in grey and dark grey tones."
    outcome = engine.review(caption, make_ctx(draft=caption, attempts_left=0, is_fallback=True, subject=subject))
    assert (_codes(outcome).get("confidence") == "subject.unsure") is held
    if held:
        assert outcome.action == "review"
        reason = next(r for r in hold_reasons(outcome.decisions, outcome.action) if r.code == "subject.unsure")
        assert "unsure" in reason.message and "VLM" in reason.fix


def test_people_and_skus_are_not_judged_by_the_subject_margin(engine, make_ctx):
    subject = _hedged_subject("a helmet", 0.58)
    caption = "A helmet in grey and dark grey tones."
    with_sku = make_ctx(draft=caption, attempts_left=0, is_fallback=True, subject=subject, sku="SKU1")
    assert "subject.unsure" not in _codes(engine.review(caption, with_sku)).values()
    people = subject.model_copy(update={"people": 1, "required": 0.0, "mass": 1.0})
    ctx = make_ctx(draft=caption, attempts_left=0, is_fallback=True, subject=people)
    assert "subject.unsure" not in _codes(engine.review(caption, ctx)).values()
