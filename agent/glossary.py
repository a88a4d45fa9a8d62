"""A merchant's glossary as data: terms never translated (brands, product lines) and prescribed or forbidden
renderings per language, per brand ("Becher", never "Tasse", for Nordvik mugs in German).

The template refiner renders a drafted subject the glossary names as it prescribes; LLM refiners get the terms
as constraints in their prompt; the ``glossary`` policy rule checks every output (``violations``).
"""

from __future__ import annotations

import difflib
import re
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from caption_agent.errors import ConfigError
from caption_agent.locales import language_code

__all__ = ["Glossary", "GlossaryTerm", "load_glossary", "merge_glossaries"]

Gender = Literal["m", "f", "n"]


class GlossaryTerm(BaseModel):
    """One glossary entry."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    term: str = Field(min_length=1, max_length=100, description="The source term, or the protected name itself.")
    keep: bool = Field(False, description="Never translated: every caption writes it exactly so (case included).")
    brands: list[str] = Field(default_factory=list, description="Only for these brands' products (empty: all).")
    render: dict[str, tuple[str, Gender] | tuple[str, Gender, str]] = Field(
        default_factory=dict,
        description="Language or locale -> (noun, gender[, article]): the prescribed rendering, as the lexicon "
        "writes nouns.",
    )
    forbidden: dict[str, list[str]] = Field(
        default_factory=dict, description="Language or locale -> renderings never to use ('*' = part of a compound)."
    )
    wrong: dict[str, list[str]] = Field(
        default_factory=dict, description="Language or locale -> translations of a kept term (always forbidden)."
    )
    note: str = Field("", max_length=300, description="Why (shown to reviewers).")

    @field_validator("forbidden", "wrong")
    @classmethod
    def _bounded(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for lang, words in value.items():
            if len(words) > 50 or any(not w.strip("* ") or len(w) > 100 for w in words):
                raise ValueError(f"{lang}: give at most 50 non-empty renderings of at most 100 characters")
        return value

    def applies(self, brands: Iterable[str]) -> bool:
        wanted = {b.casefold() for b in self.brands}
        return not wanted or bool(wanted & {b.casefold() for b in brands})

    def for_locale(self, table: dict[str, list[str]], locale: str) -> list[str]:
        return [*table.get(locale, []), *table.get(language_code(locale), [])] if table else []


class Glossary(BaseModel):
    """A glossary file (``examples/glossary_l10n.yaml`` shows the format)."""

    model_config = ConfigDict(extra="forbid")

    version: str = Field("1", max_length=40, description="Bump on every change.")
    terms: list[GlossaryTerm] = Field(default_factory=list, max_length=5000)

    def rendering(self, term: str, locale: str, brands: Iterable[str]) -> tuple[str, ...] | None:
        """The prescribed rendering of the English ``term`` in ``locale``, or None."""
        brands = list(brands)
        for entry in self.terms:
            if entry.term.casefold() == term.casefold() and entry.applies(brands):
                found = entry.render.get(locale) or entry.render.get(language_code(locale))
                if found:
                    return found
        return None

    def constraints(self, locale: str, brands: Iterable[str]) -> list[str]:
        """The glossary as prompt lines for an LLM refiner (data, delimited by the prompt template)."""
        brands = list(brands)
        lines = []
        for entry in self.terms:
            if not entry.applies(brands):
                continue
            if entry.keep:
                lines.append(f'Write "{entry.term}" exactly so; never translate it.')
            rendering = entry.render.get(locale) or entry.render.get(language_code(locale))
            if rendering:
                lines.append(f'Translate "{entry.term}" as "{rendering[0]}".')
            bad = [w.strip("*") for w in entry.for_locale(entry.forbidden, locale)]
            if bad:
                lines.append(f"Never write: {', '.join(repr(w) for w in bad)}.")
        return lines[:40]

    def violations(self, text: str, locale: str, brands: Iterable[str]) -> list[str]:
        """What in ``text`` breaks the glossary for ``locale``: a kept term written otherwise or translated, a
        forbidden rendering used."""
        brands = list(brands)
        out: list[str] = []
        for entry in self.terms:
            if not entry.applies(brands):
                continue
            if entry.keep:
                out += [f"{entry.term!r} written as {w!r}" for w in _variants(text, entry.term)]
                out += [
                    f"{entry.term!r} translated as {w!r}"
                    for w in entry.for_locale(entry.wrong, locale)
                    if _find(text, w)
                ]
            for word in entry.for_locale(entry.forbidden, locale):
                if found := _find(text, word):
                    out.append(f"{found!r} is a forbidden rendering of {entry.term!r} in {locale}")
        return list(dict.fromkeys(out))


def _pattern(word: str) -> re.Pattern[str]:
    """A word or phrase; '*' at either end lets it be part of a compound ('*tasse' finds 'Kaffeetasse')."""
    head = r"\w*" if word.startswith("*") else r"(?<!\w)"
    tail = r"\w*" if word.endswith("*") else r"(?!\w)"
    body = r"\s+".join(re.escape(w) for w in word.strip("* ").split())
    return re.compile(head + body + tail, re.IGNORECASE)


def _find(text: str, word: str) -> str | None:
    match = _pattern(word).search(text)
    return match.group(0) if match else None


def _variants(text: str, term: str) -> list[str]:
    """Spellings of ``term`` in ``text`` other than the exact one: another case ('NORDVIK', 'Trailmate') or a
    near miss ('Nordvick')."""
    found = [m.group(0) for m in _pattern(term).finditer(text) if m.group(0) != term]
    if len(term) >= 5 and " " not in term:
        for word in re.findall(r"[^\W\d_][\w'-]*", text):
            close = difflib.SequenceMatcher(None, word.casefold(), term.casefold()).ratio() >= 0.84
            if close and word.casefold() != term.casefold() and word[:1].casefold() == term[:1].casefold():
                found.append(word)
    return list(dict.fromkeys(found))


@lru_cache(maxsize=16)
def load_glossary(path: Path) -> Glossary:
    """The glossary in ``path`` (validated; ConfigError says what is wrong and where)."""
    try:
        return Glossary.model_validate(yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {})
    except (OSError, yaml.YAMLError, ValidationError) as exc:
        raise ConfigError(
            f"glossary {str(path)!r} is invalid: {exc}", fix="compare it with examples/glossary_l10n.yaml."
        ) from exc


def merge_glossaries(paths: Iterable[Path], terms: Iterable[GlossaryTerm] = ()) -> Glossary:
    """One glossary from several files and inline terms (later entries after earlier ones)."""
    merged = [t for p in paths for t in load_glossary(Path(p)).terms] + list(terms)
    return Glossary(version="+".join(load_glossary(Path(p)).version for p in paths) or "1", terms=merged)
