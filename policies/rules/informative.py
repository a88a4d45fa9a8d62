"""Informative: a caption carries what its style preset ``requires`` (``prompts/presets/*.yaml``).

* ``subject``: a named subject (an object, a person or a scene), never colours or tones alone. English names are
  WordNet's (any lemma above the ImageNet classes that is specific enough to picture), other languages the
  lexicon's; a scene word or the product's catalog title counts too.
* ``product_name``: with a sku (``with_sku``; or ``always``), the product's catalog title (its own or the locale's).

Nothing here can be fixed in place: such a caption is held (in a chain, the next refiner writes first).
"""

from __future__ import annotations

from typing import Literal

from caption_agent.policies.rules import vocabulary as vocab
from caption_agent.policies.rules.base import Rule, RuleConfig, RuleResult


class InformativeConfig(RuleConfig):
    can_fix = False
    action: Literal["allow", "regenerate", "fallback", "review", "block"] = "review"
    on_exhausted: Literal["fallback", "review", "block"] = "review"
    on_draft: Literal["allow", "review", "block"] = "review"


class InformativeRule(Rule):
    name = "informative"
    config_model = InformativeConfig
    order = 100
    stages = frozenset({"output"})
    config: InformativeConfig

    def check_output(self, text: str, ctx) -> RuleResult:
        requires = ctx.preset.requires
        lang = vocab.lang_of(ctx)
        tokens = vocab.words(text)
        sku = getattr(ctx, "sku", None)
        if requires.product_name == "always" or (requires.product_name == "with_sku" and sku):
            titles = vocab.product_titles(ctx, sku) if sku else []
            if not titles:
                why = f"the catalog gives no title for {sku} in {ctx.locale}" if sku else "the request names no sku"
                return self._held(text, ctx, "product.unnamed", f"no product name to state: {why}", sku=sku)
            if not any(vocab.contains(tokens, t) for t in titles):
                return self._held(
                    text,
                    ctx,
                    "product.unnamed",
                    f"the caption does not name the product {sku} ({titles[0]!r})",
                    feedback=f"name the product: {titles[0]}",
                    sku=sku,
                )
        if requires.subject:
            named = self._subject(text, tokens, lang, ctx)
            draft = ctx.draft or ""
            # A refiner cannot name a subject that nothing gave it: with a colour-only draft and no facts, a
            # subject in the caption is the refiner's invention ("a few scattered light sources").
            rewritten = lang == "en" and bool(draft.strip()) and text.strip() != draft.strip()
            if (
                named is not None
                and not ctx.facts
                and rewritten
                and self._subject(draft, vocab.words(draft), "en", ctx) is None
            ):
                named = None
            if named is None:
                return self._held(
                    text,
                    ctx,
                    "subject.unnamed",
                    "the caption names no subject (only colours, tones or vague words)",
                    feedback="name what the picture shows",
                )
            return self.allow(text, f"names its subject ({named!r})", subject=named)
        return self.allow(text, "carries what the style requires")

    def _subject(self, text: str, tokens: list[str], lang: str, ctx) -> str | None:
        """The subject the caption names, or None."""
        for sku in dict.fromkeys(f.sku for f in ctx.facts):  # a product's name is a subject (whether it may be
            for title in vocab.product_titles(ctx, sku):  # named without a sku is the catalog rule's question)
                if vocab.contains(tokens, title):
                    return title
        scenes = vocab.scene_words(lang)
        if scene := next((w for w in tokens if w in scenes), None):
            return scene
        if thing := next((w for w in tokens if w in vocab.object_words(lang)), None):
            return thing
        if lang == "en":
            vague = vocab.vague_words("en")
            for phrase, synsets in vocab.english_names(text).items():
                if (phrase not in vague or _noun_phrase(tokens, phrase)) and any(vocab.is_specific(s) for s in synsets):
                    return phrase
            return None
        named = next((n for n in vocab.lexicon_names(lang) if vocab.contains(tokens, n)), None)
        if named is not None:
            return named
        # A word the lexicon lacks ("Espressotasse") names something when the draft does: whether it is the draft's
        # subject is the faithful rule's question; colours and vague words never count.
        if not any(vocab.is_specific(s) for v in vocab.english_names(ctx.draft or "").values() for s in v):
            return None
        plain = vocab.function_words(lang) | vocab.vague_words(lang)
        return next((w for w in tokens if w not in plain and len(w) > 2), None)

    def _held(self, text: str, ctx, code: str, reason: str, feedback: str | None = None, **details) -> RuleResult:
        return self.violation(text, None, reason, ctx, feedback=feedback, code=code, **details)


def _noun_phrase(tokens: list[str], word: str) -> bool:
    """True when a colour word is a noun here: after an article, before a function word or the end ("An orange in
    dark grey tones."), not an adjective ("a mostly orange scene", "an orange cup")."""
    plain = vocab.function_words("en")
    return any(
        w == word and i > 0 and tokens[i - 1] in ("a", "an", "the") and (i + 1 == len(tokens) or tokens[i + 1] in plain)
        for i, w in enumerate(tokens)
    )
