"""Faithful: whatever refiner wrote it, the caption keeps the draft's subject and states no object that the draft
and the facts do not support.

* Subject kept: English captions must name the draft's subject or a WordNet synonym, hypernym or (supported)
  hyponym of it ("a cat" may become "an animal", or "a tabby cat" when a fact says so; never "a dog"); captions in
  other languages must carry the lexicon's name for it (or the draft's own words, when the draft is in that
  language); in Japanese and Chinese the name may stand anywhere in the text, and in compounding languages
  (de, nl, sv, da, nb) as the head of a compound ("Espressotasse" names a Tasse). Plurals count ("gants"), and so
  do the lexicon's synonyms of the name ("Wasserkocher" for a kettle, "daypack" for a backpack) and the names of
  the lexicon entries WordNet puts above it ("Lampe" for a table lamp), as in English.
  A draft whose subject cannot be read (a VLM's free text) is compared by its objects instead.
* Nothing added (English): every basic-level object the caption names must be named by the draft, a fact or the
  image text, or be a hypernym of one of them.

The ranked draft itself always passes. Nothing can be fixed in place: such a caption is held (in a chain, the next
refiner writes first).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from caption_agent.policies.rules import vocabulary as vocab
from caption_agent.policies.rules.base import Rule, RuleConfig, RuleResult


class FaithfulConfig(RuleConfig):
    can_fix = False
    action: Literal["allow", "regenerate", "fallback", "review", "block"] = "review"
    on_exhausted: Literal["fallback", "review", "block"] = "review"
    on_draft: Literal["allow", "review", "block"] = "review"
    objects: bool = Field(True, description="Hold English captions that name an object nothing supports.")


class FaithfulRule(Rule):
    name = "faithful"
    config_model = FaithfulConfig
    order = 110
    stages = frozenset({"output"})
    config: FaithfulConfig

    def check_output(self, text: str, ctx) -> RuleResult:
        if " ".join(text.split()) == " ".join((ctx.draft or "").split()):
            return self.allow(text, "the text is the ranked draft")
        lang = vocab.lang_of(ctx)
        tokens = vocab.words(text)
        support = [ctx.draft] + [t for _, t in ctx.sources(trusted_only=True) if t != ctx.draft]
        stated = vocab.stated_synsets(support)
        if lang == "en":
            draft_names = vocab.english_names(ctx.draft or "")
            subject = vocab.subject_names(ctx.draft or "", "en")
            wanted = vocab.stated_synsets([subject[0]]) if subject else set()
            wanted = wanted or {s for v in draft_names.values() for s in v if vocab.is_specific(s)}
            said = vocab.english_names(text)
            synonyms = vocab.lexicon_synonyms(subject[0], "en") if subject else []
            if (
                wanted
                and not any(vocab.related(v, wanted) for v in said.values())
                and not any(vocab.names(tokens, s, "en") for s in synonyms)
            ):
                return self._held(
                    text, ctx, "subject.changed", "the caption does not keep the draft's subject", subject=subject
                )
            if self.config.objects:
                added = [p for p, v in said.items() if any(map(vocab.is_listed, v)) and not vocab.supports(v, stated)]
                if added:
                    return self._held(
                        text,
                        ctx,
                        "object.unsupported",
                        f"the caption names {', '.join(map(repr, added))}, which neither the draft nor the facts state",
                        objects=added,
                    )
            return self.allow(text, "keeps the draft's subject and adds no object")
        found = vocab.subject_names(ctx.draft or "", lang)
        if found is None:
            return self.allow(text, "the draft names no single subject to keep")
        own, names = found
        if vocab.names(tokens, own, lang):
            return self.allow(text, "keeps the draft's own words (the draft is in the caption's language)")
        if not names:
            return self._held(
                text,
                ctx,
                "subject.unverified",
                f"the lexicon has no {lang} name for the draft's subject ({own!r}), so the caption cannot be checked",
            )
        if not any(vocab.names(tokens, n, lang) for n in names):
            return self._held(
                text, ctx, "subject.changed", f"the caption does not name the draft's subject ({names[0]!r})"
            )
        return self.allow(text, f"keeps the draft's subject ({names[0]!r})")

    def _held(self, text: str, ctx, code: str, reason: str, **details) -> RuleResult:
        return self.violation(text, None, reason, ctx, code=code, **details)
