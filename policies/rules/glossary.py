"""Glossary and register: a merchant's terms and the way a style addresses its readers, per locale.

Terms come from glossary files (``files``) and inline ``terms``: a kept term (brand, product line) written in any
other way or translated, or a forbidden rendering ("Tasse" where the merchant says "Becher"), asks for a
regenerate, then holds the caption. Register comes from the style preset (``register:``, e.g. social speaks with
"du"): a caption that addresses the reader in the other register is treated the same way, where the language's
pronouns tell (``register_words``). The same terms reach the refiners first (``refine_terms``): the template
refiner renders as prescribed, LLM refiners get them as constraints in their prompt.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from caption_agent.glossary import Glossary, GlossaryTerm, merge_glossaries
from caption_agent.locales import language_code
from caption_agent.policies.rules.base import Rule, RuleConfig, RuleResult

__all__ = ["GlossaryConfig", "GlossaryRule", "refine_terms"]


class GlossaryConfig(RuleConfig):
    can_fix = False
    action: Literal["allow", "regenerate", "fallback", "review", "block"] = "regenerate"
    on_exhausted: Literal["fallback", "review", "block"] = "review"
    on_draft: Literal["allow", "review", "block"] = "review"
    files: list[Path] = Field(
        default_factory=list, max_length=32, description="Glossary YAML files (examples/glossary_l10n.yaml)."
    )
    terms: list[GlossaryTerm] = Field(default_factory=list, max_length=1000, description="Inline glossary terms.")
    register_words: dict[str, dict[Literal["formal", "informal"], list[str]]] = Field(
        default_factory=dict,
        description="Language -> the words that address a reader formally / informally. Capitalised formal words "
        "(German 'Sie') count only inside a sentence and in that case; the others in any case.",
    )


class GlossaryRule(Rule):
    name = "glossary"
    config_model = GlossaryConfig
    order = 140
    stages = frozenset({"output"})
    config: GlossaryConfig

    def glossary(self) -> Glossary:
        cached = getattr(self, "_glossary", None)
        if cached is None:
            cached = merge_glossaries(self.config.files, self.config.terms)
            self._glossary = cached
        return cached

    def check_output(self, text: str, ctx: Any) -> RuleResult:
        problems = self.glossary().violations(text, ctx.locale, brands_of(ctx))
        register = ctx.preset.register_for(ctx.locale)
        problems += self.register_problems(text, ctx.locale, register)
        if not problems:
            return self.allow(text, f"glossary respected ({len(self.glossary().terms)} terms; register {register})")
        return self.violation(
            text,
            None,
            "glossary: " + "; ".join(problems[:5]),
            ctx,
            feedback="; ".join(self.constraints(ctx)[:6]) or "; ".join(problems[:3]),
            problems=problems[:10],
        )

    def register_problems(self, text: str, locale: str, register: str) -> list[str]:
        if register not in ("formal", "informal"):
            return []
        other: Literal["formal", "informal"] = "informal" if register == "formal" else "formal"
        words = self.config.register_words.get(language_code(locale), {}).get(other, [])
        found = [w for w in words if _addresses(text, w)]
        if not found:
            return []
        return [f"addresses the reader {other}ly ({', '.join(found[:3])}); the style speaks {register}ly"]

    def constraints(self, ctx: Any) -> list[str]:
        """Prompt lines for an LLM refiner: the glossary, then the register."""
        lines = self.glossary().constraints(ctx.locale, brands_of(ctx))
        register = ctx.preset.register_for(ctx.locale)
        words: list[str] = []
        if register in ("formal", "informal"):
            words = self.config.register_words.get(language_code(ctx.locale), {}).get(register, [])
        if getattr(ctx, "image_text", ""):
            lines.append("Quote the text read from the image exactly as written; never translate it.")
        if words:
            lines.append(f"Address the reader {register}ly ({words[0]}).")
        elif register == "neutral":
            lines.append("Do not address the reader.")
        return lines


def _addresses(text: str, word: str) -> bool:
    if word[:1].isupper():  # "Sie" is formal inside a sentence; at its start it may be "they"
        return re.search(r"(?<=[^\s.!?:])\s+" + re.escape(word) + r"(?!\w)", text) is not None
    return re.search(r"(?<!\w)" + re.escape(word) + r"(?!\w)", text, re.IGNORECASE) is not None


def brands_of(ctx: Any) -> set[str]:
    """The brands of the products whose facts the request carries."""
    return {str(f.fields["brand"]) for f in ctx.facts if f.fields.get("brand")}


def refine_terms(policy: Any, ctx: Any) -> tuple[Glossary | None, list[str]]:
    """The glossary and prompt constraints for one refinement under ``policy`` (None, [] without the rule)."""
    rules = getattr(policy, "rules", None)
    found = rules(ctx.preset.name) if callable(rules) else ()
    if not isinstance(found, list):
        return None, []
    rule = next((r for r in found if isinstance(r, GlossaryRule) and r.config.enabled), None)
    if rule is None:
        return None, []
    return rule.glossary(), rule.constraints(ctx)
