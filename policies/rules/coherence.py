"""Coherence: the caption is prose a person would publish, not a weak model's failure.

Degenerate text is held whatever wrote it: placeholders ("<the caption>", "{title}", "[caption]"), hyphen chains
("Alison-Laflin-Sabr-Cup-…"), repeated word n-grams and decoding loops, echoes of the prompt's own wording, and
token soups (a run of capitalised words with no function word between them). Styles that require whole sentences
(``requires.sentence``) also hold text cut off mid-sentence (ending on a comma, a dash, an ellipsis, or on "and",
"mit") and
a sentence fragment left behind when a removal emptied the sentence around it ("Questions? Color: white").
"""

from __future__ import annotations

import re
from functools import lru_cache
from importlib import resources
from typing import Literal

from pydantic import Field

from caption_agent.policies.rules import vocabulary as vocab
from caption_agent.policies.rules.base import Rule, RuleConfig, RuleResult
from caption_agent.refiners.template import fragment
from caption_agent.text import repetition_loop

_PLACEHOLDER = re.compile(
    r"<\s*[a-z][a-z_ ]{2,30}(?:>|$)|\{\{?\s*[a-z_. ]{1,30}\}?\}|"
    r"\[\s*(?:the |your )?(?:caption|alt text|text|subject|product|"
    r"name|brand|description|title|image|placeholder|insert[^\]]*)\s*\]|lorem ipsum",
    re.IGNORECASE,
)
# The marker in upper case only: "todo" is a word of Spanish and Portuguese ("todo el día", "o ano todo").
_TODO = re.compile(r"\bTODO\b")
_CHAIN = re.compile(r"[^\W\d_]+(?:-[^\W\d_]+){3,}")
_LEADING = re.compile(r"^\s*[,;:.!?)\]}]")  # a sentence starts with a word, a number or a quote, not this
_CUT = re.compile(r"(?:[,;:(\-–—]|\.\.\.|…)\s*$")
_HASHTAGS = re.compile(r"(?:\s+#[\w-]+)+$")
_SENTENCES = re.compile(r"(?<=[.!?])\s+")
_LAST_TOKEN = re.compile(r"[^\W_]+")


class CoherenceConfig(RuleConfig):
    can_fix = False
    action: Literal["allow", "regenerate", "fallback", "review", "block"] = "review"
    on_exhausted: Literal["fallback", "review", "block"] = "review"
    on_draft: Literal["allow", "review", "block"] = "review"
    repeated_ngram: int = Field(
        3, ge=2, le=8, description="A word n-gram of this length said twice in one sentence is degenerate."
    )
    echo_ngram: int = Field(5, ge=3, le=12, description="This many words in a row from the prompt are an echo.")
    soup_run: int = Field(4, ge=3, le=20, description="This many capitalised words in a row with no function word.")


@lru_cache(maxsize=1)
def _prompt_ngrams(n: int) -> frozenset[tuple[str, ...]]:
    """Word n-grams of the prompt templates' fixed wording (a caption that repeats one echoes the prompt)."""
    folder = resources.files("caption_agent.prompts") / "templates"
    text = " ".join((folder / name).read_text(encoding="utf-8") for name in ("system.j2", "user.j2"))
    text = re.sub(r"\{[{%#].*?[}%#]\}", " | ", text)
    out: set[tuple[str, ...]] = set()
    for part in text.split("|"):
        tokens = vocab.words(part)
        out |= {tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)}
    return frozenset(out)


class CoherenceRule(Rule):
    name = "coherence"
    config_model = CoherenceConfig
    order = 90
    stages = frozenset({"output"})
    config: CoherenceConfig

    def check_output(self, text: str, ctx) -> RuleResult:
        lang = vocab.lang_of(ctx)
        problem = self._degenerate(text, ctx, lang)
        if problem is not None:
            code, reason = problem
            return self.violation(text, None, reason, ctx, code=code)
        if ctx.preset.requires.sentence:
            problem = self._unfinished(text, lang)
            if problem is not None:
                return self.violation(text, None, problem[1], ctx, code=problem[0])
        return self.allow(text, "reads as prose")

    def _degenerate(self, text: str, ctx, lang: str) -> tuple[str, str] | None:
        if m := _PLACEHOLDER.search(text) or _TODO.search(text):
            return "text.placeholder", f"the caption contains a placeholder ({m.group(0)!r})"
        if _LEADING.search(text):
            return "text.degenerate", f"the caption starts with {text.strip()[:1]!r}, not a word"
        if m := _CHAIN.search(text):
            return "text.degenerate", f"the caption contains a hyphen chain ({m.group(0)[:60]!r})"
        if (unit := repetition_loop(text)) is not None:
            return "text.degenerate", f"the caption repeats {unit!r} in a loop"
        n = self.config.repeated_ngram
        sentences = [vocab.words(s) for s in _SENTENCES.split(text) if s.strip()]
        for sentence in sentences:  # within a sentence: product copy may repeat the title in its next sentence
            grams = [tuple(sentence[i : i + n]) for i in range(len(sentence) - n + 1)]
            if repeated := next((g for i, g in enumerate(grams) if g in grams[:i]), None):
                return "text.degenerate", f"the caption says {' '.join(repeated)!r} twice in one sentence"
        if len(sentences) != len({tuple(s) for s in sentences}):
            return "text.degenerate", "the caption says the same sentence twice"
        tokens = vocab.words(text)
        echo = _prompt_ngrams(self.config.echo_ngram)
        k = self.config.echo_ngram
        if said := next(
            (tuple(tokens[i : i + k]) for i in range(len(tokens) - k + 1) if tuple(tokens[i : i + k]) in echo), None
        ):
            return "text.prompt_echo", f"the caption repeats the prompt ({' '.join(said)!r})"
        if lang != "de":  # German capitalises every noun
            titles = set(vocab.catalog_words(ctx))
            fn = vocab.function_words(lang)
            run = 0
            for raw in vocab.WORD.findall(text)[1:]:
                word = vocab.words(raw)[0]
                run = run + 1 if raw[:1].isupper() and word not in fn and word not in titles else 0
                if run >= self.config.soup_run:
                    return "text.degenerate", "the caption is a run of capitalised words, not a sentence"
        return None

    def _unfinished(self, text: str, lang: str) -> tuple[str, str] | None:
        body = _HASHTAGS.sub("", text.strip())
        if _CUT.search(body):
            return "text.cut_off", "the caption stops mid-sentence (it ends on a comma, colon, dash or an ellipsis)"
        last = _LAST_TOKEN.findall(body)[-1:]  # numbers count: "Saucer Set of 4." ends on "4", not on "of"
        if last and vocab.fold(last[0]) in frozenset(vocab.data().get("dangling_ends", {}).get(lang, [])):
            return "text.cut_off", f"the caption ends on {vocab.fold(last[0])!r}: the sentence is cut off"
        for sentence in _SENTENCES.split(body):
            if fragment(sentence):
                return "text.dangling", f"{sentence.strip()!r} is left without the sentence it belonged to"
        return None
