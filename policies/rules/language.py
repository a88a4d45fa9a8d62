"""Language: the caption is written in the requested locale's language (langdetect, seeded)."""

from __future__ import annotations

import re
import threading
from typing import Any, Literal

from pydantic import Field

from caption_agent.locales import language_code
from caption_agent.policies.rules.base import Rule, RuleConfig, RuleResult
from caption_agent.retrieval.i18n import localized_fields
from caption_agent.text import normalize

# langdetect's codes that differ from BCP-47 primary tags, and tags that name one language.
_SAME = {"zh-cn": "zh", "zh-tw": "zh", "no": "nb", "nn": "nb", "iw": "he", "in": "id", "tl": "fil"}
_LOCK = threading.Lock()
# Languages langdetect confuses on short product text (shared words, similar spelling).
_CLOSE = {
    "sv": {"nb", "da"},
    "nb": {"sv", "da"},
    "da": {"nb", "sv"},
    "es": {"pt", "it", "ca", "gl"},
    "pt": {"es", "gl", "it"},
    "it": {"es", "pt"},
    "fr": {"it", "ca"},
    "nl": {"af", "de"},
}


class LanguageConfig(RuleConfig):
    can_fix = False
    action: Literal["allow", "regenerate", "fallback", "review", "block"] = "regenerate"
    on_exhausted: Literal["fallback", "review", "block"] = "review"
    on_draft: Literal["allow", "review", "block"] = "review"
    min_chars: int = Field(30, ge=1, description="Shorter text is not checked (detection is unreliable).")
    min_words: int = Field(5, ge=1, description="Text with fewer words is not checked.")
    mismatch_probability: float = Field(
        0.8,
        gt=0,
        le=1,
        description="A different language must be at least this likely before the caption counts as wrong.",
    )
    accept_probability: float = Field(
        0.2, ge=0, le=1, description="The requested language passes if it is at least this likely."
    )
    uncertain_action: Literal["allow", "review"] = Field("allow", description="When neither holds.")
    known_words_max: int = Field(
        12,
        ge=0,
        description="A caption of at most this many words (names left out) whose every word is a known word of "
        "the requested locale (its lexicon, templates and own catalog fields) passes whatever the detector reads: "
        "detectors misread short product text ('Eine Vase. Eine hohe, mundgeblasene Vase aus Glas.' as Estonian).",
    )
    english_share: float = Field(
        0.8,
        gt=0,
        le=1,
        description="Text too short to detect, for a locale that is not English: at least this share of its words "
        "taken from the English draft or from English function words counts as English (the draft echoed).",
    )


# Words of the drafters' English phrasing: a short caption built from these and the draft's words is the English
# draft, reworded or not ("A mainly red scene." for de-DE), whatever langdetect cannot say about 3 words.
_ENGLISH_WORDS = frozenset(
    "a an the in on of with and or by at to for from its their his her is are this that mostly mainly "
    "scene tones tone photo image picture close up person people".split()
)
_WORD = re.compile(r"[^\W\d_]+")


def detect(text: str) -> list[tuple[str, float]]:
    """(language code, probability) best first; deterministic (seeded)."""
    from langdetect import DetectorFactory, detect_langs
    from langdetect.lang_detect_exception import LangDetectException

    with _LOCK:  # the factory is global and loads its profiles on first use
        DetectorFactory.seed = 0
        try:
            found = detect_langs(text)
        except LangDetectException:
            return []
    return [(_SAME.get(g.lang, g.lang.split("-")[0]), float(g.prob)) for g in found]


class LanguageRule(Rule):
    name = "language"
    config_model = LanguageConfig
    order = 120
    required = True
    stages = frozenset({"output"})
    config: LanguageConfig

    def _echoes_english(self, sample: str, draft: str) -> bool:
        words = [w.casefold() for w in _WORD.findall(sample)]
        if not words:
            return False
        english = _ENGLISH_WORDS | {w.casefold() for w in _WORD.findall(draft or "")}
        return sum(w in english for w in words) / len(words) >= self.config.english_share

    def check_output(self, text: str, ctx) -> RuleResult:
        want = _SAME.get(language_code(ctx.locale), language_code(ctx.locale))
        sample = _detection_sample(text, ctx)
        script = _cjk_script_says(sample, want)
        if script:
            return self.allow(text, f"written in {script}, the {want} script", expected=want)
        if len(sample) < self.config.min_chars or len(sample.split()) < self.config.min_words:
            return self._check_short(text, sample, want, ctx)
        return self._check_detected(text, sample, want, ctx)

    def _check_short(self, text: str, sample: str, want: str, ctx) -> RuleResult:
        """Text too short to detect: an echo of the English draft is wrong, and every word must be a known one."""
        if want != "en" and self._echoes_english(sample, ctx.draft):
            return self.violation(
                text,
                None,
                f"caption is the English draft's wording, locale {ctx.locale} wants {want}",
                ctx,
                feedback=f"write the caption in the language of {ctx.locale}",
                expected=want,
            )
        # English needs no such check: the drafters write it, and garbled English is the coherence rule's.
        # Only the catalog's words for this locale count: the English title alone is no ja-JP caption.
        unknown = _unknown_words(text, want, ctx, own_locale_only=True) if want != "en" else []
        if unknown:
            return self.violation(
                text,
                None,
                f"too short to detect the language ({len(sample)} chars), and {', '.join(map(repr, unknown[:5]))}"
                f" is not a {want} word of the lexicon, the templates or the catalog",
                ctx,
                feedback=f"write the caption in the language of {ctx.locale}",
                expected=want,
                unknown=unknown[:10],
                code="language.unverified",
            )
        return self.allow(
            text,
            f"too short to detect the language reliably ({len(sample)} chars, "
            f"{len(sample.split())} words); every word is a known {want} word",
            expected=want,
        )

    def _check_detected(self, text: str, sample: str, want: str, ctx) -> RuleResult:
        """Text long enough to detect: the detector's reading, checked against the known words where it may err."""
        found = detect(sample)
        probs: dict[str, float] = {}
        for code, p in found:
            probs[code] = probs.get(code, 0.0) + p
        details: dict[str, Any] = {"expected": want, "detected": {k: round(v, 3) for k, v in probs.items()}}
        if probs.get(want, 0.0) >= self.config.accept_probability:
            return self.allow(text, f"language {want} detected (p={probs.get(want, 0.0):.2f})", **details)
        top, p_top = max(probs.items(), key=lambda kv: kv[1], default=("?", 0.0))
        short = len(sample.split()) <= self.config.known_words_max
        if (top in _CLOSE.get(want, ()) or short) and not _unknown_words(text, want, ctx, own_locale_only=True):
            # langdetect reads short Swedish as Norwegian, confuses es/pt/it and misreads short product text: a close
            # language, or any language on a short caption, is accepted only when every word is a known word of the
            # requested language (its lexicon, templates, vocabulary and the catalog's fields for this locale).
            why = f"a language close to {want}" if top in _CLOSE.get(want, ()) else "on a short caption"
            return self.allow(
                text, f"detected {top} (p={p_top:.2f}), {why}; every word is a known {want} word", **details
            )
        if p_top >= self.config.mismatch_probability:
            return self.violation(
                text,
                None,
                f"caption is in {top} (p={p_top:.2f}), locale {ctx.locale} wants {want}",
                ctx,
                feedback=f"write the caption in the language of {ctx.locale}",
                code="language.wrong",
                **details,
            )
        if self.config.uncertain_action == "review":
            return self.violation(
                text,
                None,
                f"language uncertain (best {top}, p={p_top:.2f}); wanted {want}",
                ctx,
                wanted="review",
                **details,
            )
        return self.allow(text, f"language uncertain (best {top}, p={p_top:.2f}); allowed by policy", **details)


def _detection_sample(text: str, ctx) -> str:
    """The caption without what carries no language and misleads detection on short captions: names, codes and
    numbers (the product's own name in this locale is a name too: "Affiche portrait ...")."""
    brands = {str(v) for f in ctx.facts for k, v in f.fields.items() if k in ("brand", "title", "name")}
    for fact in ctx.facts:
        local = localized_fields(dict(fact.fields), ctx.locale) or {}
        brands |= {str(v) for k, v in local.items() if k in ("title", "name") and v}
    sample = normalize(text)
    for brand in sorted(brands, key=len, reverse=True):
        sample = sample.replace(brand, " ")
    sample = re.sub(r"\b[A-Z0-9][A-Z0-9-]+\b|\d+|\[\w+\]", " ", sample)
    return " ".join(sample.split())


def _unknown_words(text: str, lang: str, ctx, own_locale_only: bool = False) -> list[str]:
    """Content words of a short caption that no source of ``lang`` words gives: the lexicon, the compose templates,
    the catalog's fields (with ``own_locale_only``, only those written for the context's locale), the vocabulary file
    (policies/vocabulary.yaml), the locale formatter's unit names."""
    from caption_agent.policies.rules import vocabulary as vocab

    catalog = vocab.locale_catalog_words(ctx) if own_locale_only else vocab.catalog_words(ctx)
    known = vocab.function_words(lang) | vocab.lexicon_words(lang) | catalog
    known |= vocab.vague_words(lang) | vocab.scene_words(lang) | vocab.template_words(ctx.preset.name, lang)
    known |= vocab.unit_words(lang)
    return list(dict.fromkeys(w for w in vocab.words(text) if w not in known))


def _cjk_script_says(sample: str, want: str) -> str:
    """For zh, ja and ko the script decides where words cannot be counted (no spaces): Han without kana or Hangul is
    Chinese, any kana with Han/kana the rest is Japanese, Hangul is Korean. '' when the script does not decide
    (another language, mixed or mostly Latin text)."""
    letters = [ch for ch in sample if ch.isalpha()]
    if len(letters) < 2:
        return ""
    han = sum("\u4e00" <= ch <= "\u9fff" or "\u3400" <= ch <= "\u4dbf" for ch in letters)
    kana = sum("\u3040" <= ch <= "\u30ff" for ch in letters)
    hangul = sum("\uac00" <= ch <= "\ud7af" or "\u1100" <= ch <= "\u11ff" for ch in letters)
    share = (han + kana + hangul) / len(letters)
    if share < 0.6:
        return ""
    if want == "zh" and han and not kana and not hangul:
        return "Han (no kana, no Hangul)"
    if want == "ja" and kana and not hangul:
        return "kana and kanji"
    if want == "ko" and hangul and not kana:
        return "Hangul"
    return ""
