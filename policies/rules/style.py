"""Style: the preset's length limits (characters, words, CLIP tokens), banned openings and banned phrases.

Limits come from the style preset (prompts/presets/*.yaml) and the request's ``max_chars``; the policy may add
openings and phrases. Long text is trimmed at a word boundary, a banned opening or phrase is cut out; text that
is too short cannot be fixed and asks for a regenerate.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field

from caption_agent.canonical import visible
from caption_agent.policies.rules.base import Rule, RuleConfig, RuleResult
from caption_agent.policies.rules.blocklist import term_pattern
from caption_agent.text import fit_length, skeleton_map, tidy


class StyleConfig(RuleConfig):
    action: Literal["allow", "redact", "regenerate", "fallback", "review", "block"] = "redact"
    on_exhausted: Literal["redact", "fallback", "review", "block"] = "redact"
    on_draft: Literal["allow", "redact", "review", "block"] = "redact"
    too_short_action: Literal["allow", "regenerate", "fallback", "review", "block"] = Field(
        "regenerate", description="Text under the preset's min_chars cannot be fixed in place."
    )
    extra_banned_openings: list[str] = Field(default_factory=list, description="Added to the preset's.")
    extra_banned_phrases: list[str] = Field(default_factory=list, description="Added to the preset's.")
    clip_tokens: bool = Field(True, description="Enforce the preset's max_clip_tokens with CLIP's tokenizer.")


class StyleRule(Rule):
    name = "style"
    config_model = StyleConfig
    order = 80
    required = True
    stages = frozenset({"output"})
    config: StyleConfig

    def check_output(self, text: str, ctx) -> RuleResult:
        preset = ctx.preset
        budget = preset.limits(ctx.locale)  # the preset's limits for this locale (budgets: per language/script)
        limit, min_chars, max_words = (
            min(ctx.max_chars or budget.max_chars or ctx.limit, budget.max_chars or ctx.limit),
            budget.min_chars or 0,
            budget.max_words,
        )
        fixes: list[str] = []
        openings = [*preset.banned_openings, *self.config.extra_banned_openings]
        fixed = _without_banned(text, openings, [*preset.banned_phrases, *self.config.extra_banned_phrases], fixes)
        fixed = self._fitted(fixed, limit, min_chars, max_words, preset.max_clip_tokens, fixes)
        limits = {
            "max_chars": limit,
            "min_chars": min_chars,
            "max_words": max_words,
            "max_clip_tokens": preset.max_clip_tokens,
            "chars": len(fixed),
        }
        decisions = []
        if fixes:
            result = self.violation(
                text,
                fixed,
                "style: " + "; ".join(fixes),
                ctx,
                feedback=f"at most {limit} characters; do not start with {', '.join(repr(o) for o in openings[:3])}",
                limits=limits,
            )
            decisions, fixed = result.decisions, result.text
        if len(fixed) < min_chars:
            short = self.violation(
                fixed,
                None,
                f"{len(fixed)} characters < the preset's minimum {min_chars} for {ctx.locale}",
                ctx,
                wanted=self.config.too_short_action,
                feedback=f"write at least {min_chars} characters",
                limits=limits,
            )
            return RuleResult(decisions + short.decisions, fixed, short.feedback)
        if decisions:
            return RuleResult(decisions, fixed, result.feedback)
        return self.allow(
            text, f"within style limits ({len(text)}/{limit} characters, no banned opening or phrase)", limits=limits
        )

    def _fitted(
        self, fixed: str, limit: int, min_chars: int, max_words: int | None, max_tokens: int | None, fixes: list[str]
    ) -> str:
        """``fixed`` cut to the preset's words, CLIP tokens and characters, in that order; each cut noted in
        ``fixes``."""
        if max_words and len(fixed.split()) > max_words:
            fixes.append(f"{len(fixed.split())} words > {max_words}")
            fixed = _whole(fit_length(" ".join(fixed.split()[:max_words]), len(fixed)), min_chars)
        if max_tokens and self.config.clip_tokens:
            from caption_agent.clip_tokens import count_clip_tokens, fit_clip_tokens

            n = count_clip_tokens(fixed)
            if n > max_tokens:
                fixes.append(f"{n} CLIP tokens > {max_tokens}")
                fixed = fit_clip_tokens(fixed, max_tokens)
        if len(fixed) > limit:
            fixes.append(f"{len(fixed)} characters > {limit}")
            fixed = _whole(fit_length(fixed, limit), min_chars)
        return fixed


def _without_banned(text: str, openings: list[str], phrases: list[str], fixes: list[str]) -> str:
    """``text`` without invisible characters, a banned opening or banned phrases; each removal noted in ``fixes``."""
    # Only what nobody can see goes; no NFKC: the text is published as written (issue 25: normalising here
    # turned "＜script＞", which markup had judged, into "<script>").
    fixed = visible(text)
    if fixed.split() != text.split():
        fixes.append("removed invisible characters")
    cut = _strip_opening(fixed, openings)
    if cut != fixed:
        fixes.append(f"removed banned opening {fixed[: len(fixed) - len(cut)].strip()!r}")
        fixed = cut
    for phrase in phrases:
        sk, index = skeleton_map(fixed)
        m = re.search(term_pattern(phrase), sk)
        if m:
            a, b = index[m.start()], index[m.end() - 1] + 1
            fixes.append(f"removed banned phrase {fixed[a:b]!r}")
            fixed = tidy(fixed[:a] + fixed[b:])
    return fixed


def _strip_opening(text: str, openings: list[str]) -> str:
    """Cut a banned opening ("Image of", "A photo of:") however it is disguised, and re-capitalise."""
    sk, index = skeleton_map(text)
    for opening in sorted(openings, key=len, reverse=True):
        m = re.match(r"\W*" + term_pattern(opening)[len(r"(?<![^\W_])") :], sk)
        if m:
            rest = text[index[m.end() - 1] + 1 :].lstrip(" :,-–—")
            return rest[:1].upper() + rest[1:]
    return text


_CLAUSE_END = re.compile(r"[.!?;,](?=\s)")


def _whole(cut: str, min_chars: int) -> str:
    """A trimmed caption ends at its last whole sentence or clause when that keeps at least ``min_chars``:
    "…next to a window, with soft light falling across its." becomes "…next to a window." (no cut-off)."""
    ends = [m.start() for m in _CLAUSE_END.finditer(cut.rstrip(".!?"))]
    if not ends or ends[-1] + 1 < max(min_chars, 1):
        return cut
    return cut[: ends[-1]].rstrip(" ,;") + "."
