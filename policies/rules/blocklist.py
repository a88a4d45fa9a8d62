"""Blocklist and banned topics: whole-word matches that survive disguise.

Text and terms are both reduced to a skeleton (agent.text.skeleton: NFKC, case-folded, diacritics, zero-width
characters, Cyrillic/Greek look-alikes and digits-for-letters folded; "$", "@", "!" are accepted for
s, a, i). A term then matches as a whole word, each letter
may repeat ("fuuuck") and one separator may sit between letters ("f.u.c.k", "f u c k"); a trailing ``*`` in a
term allows any word ending. Word boundaries keep "classic" and "assess" clear of "ass".
"""

from __future__ import annotations

import re
from functools import cached_property
from typing import Literal

from pydantic import Field, model_validator

from caption_agent.policies.rules.base import Rule, RuleConfig, RuleResult
from caption_agent.text import skeleton, skeleton_map, tidy


class BlocklistConfig(RuleConfig):
    action: Literal["allow", "redact", "regenerate", "fallback", "review", "block"] = "regenerate"
    on_exhausted: Literal["redact", "fallback", "review", "block"] = "block"
    on_draft: Literal["allow", "redact", "review", "block"] = "block"
    terms: list[str] = Field(default_factory=list, description="Words or phrases never to publish.")
    topics: dict[str, list[str]] = Field(default_factory=dict, description="Banned topic -> its words/phrases.")
    allow: list[str] = Field(
        default_factory=list,
        description="Phrases that contain a term but are fine "
        "(e.g. 'cocktail dress'); matched the same way, they shield the term.",
    )
    check_inputs: bool = Field(
        False, description="Also mask blocklisted words in catalog/image text before the prompt."
    )
    mask: str = Field("", max_length=40, description="Replacement when redacting ('' removes the word).")

    @model_validator(mode="after")
    def _not_empty(self) -> BlocklistConfig:
        if self.enabled and not (self.terms or any(self.topics.values())):
            raise ValueError("no terms and no topic words: the rule would do nothing; add terms or set enabled: false")
        bad = [t for t in [*self.terms, *(w for ws in self.topics.values() for w in ws)] if not skeleton(t).strip("* ")]
        if bad:
            raise ValueError(f"terms with no letters after normalisation: {bad}")
        return self


# Symbols written for letters ("a$$", "@ss", "sh!t"); the skeleton keeps them, the pattern accepts them.
_SYMBOLS = {"a": "[a@]", "s": "[s$]", "i": "[i!|]", "e": "[e€]", "o": "[o°]"}


def term_pattern(term: str) -> str:
    """Regex (over skeleton text) for one term."""
    wildcard = term.rstrip().endswith("*")
    words = skeleton(term.rstrip("* ")).split()
    parts = []
    for word in words:
        letters = [_SYMBOLS.get(c, re.escape(c)) + "+" for c in word]
        parts.append(r"[\W_]?".join(letters))
    body = r"[\W_]*".join(parts)
    return r"(?<![^\W_])" + body + (r"\w*" if wildcard else "") + r"(?![^\W_])"


class BlocklistRule(Rule):
    name = "blocklist"
    config_model = BlocklistConfig
    order = 50
    required = True
    stages = frozenset({"inputs", "output"})
    config: BlocklistConfig

    @cached_property
    def _patterns(self) -> list[tuple[str, str, re.Pattern[str]]]:
        out = [("blocklist", t, re.compile(term_pattern(t))) for t in self.config.terms]
        for topic, words in self.config.topics.items():
            out += [(topic, w, re.compile(term_pattern(w))) for w in words]
        return out

    @cached_property
    def _shields(self) -> list[re.Pattern[str]]:
        return [re.compile(term_pattern(a)) for a in self.config.allow]

    def find(self, text: str) -> list[tuple[int, int, str, str]]:
        """(start, end, topic, term) in ``text`` coordinates, non-overlapping."""
        sk, index = skeleton_map(text)
        shielded = [(m.start(), m.end()) for p in self._shields for m in p.finditer(sk)]
        hits: list[tuple[int, int, str, str]] = []
        for topic, term, pattern in self._patterns:
            for m in pattern.finditer(sk):
                if any(a <= m.start() and m.end() <= b for a, b in shielded):
                    continue
                start, end = index[m.start()], index[m.end() - 1] + 1
                # Digits read as letters disguise a word only beside a letter or a symbol: "a55" and "@$$" are words,
                # "45,5" (a seat height) is a number.
                if not any(ch.isalpha() or ch in "@$!|€°" for ch in text[start:end]):
                    continue
                hits.append((start, end, topic, term))
        hits.sort(key=lambda h: (h[0], -(h[1] - h[0])))
        out: list[tuple[int, int, str, str]] = []
        for hit in hits:
            if not out or hit[0] >= out[-1][1]:
                out.append(hit)
        return out

    def _cut(self, text: str, hits: list[tuple[int, int, str, str]]) -> str:
        out, last = [], 0
        for start, end, _, _ in hits:
            out += [text[last:start], self.config.mask]
            last = end
        out.append(text[last:])
        return tidy("".join(out))

    def check_input(self, text: str, source: str, ctx) -> RuleResult:
        if not self.config.check_inputs:
            return self.allow(text, "inputs not checked (check_inputs: false)", source=source)
        hits = self.find(text)
        if not hits:
            return self.allow(text, f"no blocklisted words in {source}", source=source)
        return self.violation(
            text,
            self._cut(text, hits),
            f"removed {len(hits)} blocklisted word(s) from {source}",
            None,
            wanted="redact",
            source=source,
            matches=_describe(text, hits),
        )

    def check_output(self, text: str, ctx) -> RuleResult:
        hits = self.find(text)
        if not hits:
            return self.allow(text, f"no blocklisted words ({len(self._patterns)} terms checked)")
        topics = sorted({h[2] for h in hits})
        return self.violation(
            text,
            self._cut(text, hits),
            f"blocklisted ({', '.join(topics)}): " + ", ".join(repr(text[a:b]) for a, b, _, _ in hits),
            ctx,
            feedback="do not use these words: " + ", ".join(sorted({h[3] for h in hits})),
            matches=_describe(text, hits),
        )


def _describe(text: str, hits: list[tuple[int, int, str, str]]) -> list[dict[str, str]]:
    return [{"found": text[a:b], "term": term, "topic": topic} for a, b, topic, term in hits]
