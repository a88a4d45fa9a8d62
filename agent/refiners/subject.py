"""The draft's subject, read conservatively, and its name in other languages from the hand-written lexicon.

Drafts of the lite tagger have a few fixed shapes ("An espresso.", "A person with a bobsled in a mostly light grey
scene.", "A close-up of a daisy."); anything else is not parsed, and a template that needs the subject in another
language then cannot write the caption. Names come only from ``prompts/compose/lexicon.yaml`` (written by
people), never from machine translation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from caption_agent.errors import ConfigError
from caption_agent.schemas import DraftSubject

__all__ = ["Lexicon", "Subject", "load_lexicon", "read_subject", "subject_from"]

Gender = Literal["m", "f", "n"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PeopleForms(_Strict):
    nom: str = Field(description="The people phrase as a sentence's subject ('eine Person').")
    with_: str = Field(alias="with", description="The phrase after a preposition ('mit einer Person').")


class Lexicon(_Strict):
    """``prompts/compose/lexicon.yaml``: articles, people phrases, subject nouns and attribute labels."""

    version: str = Field("1", description="Bump when names change; part of the template refiner's model id.")
    articles: dict[str, dict[Literal["nom", "with"], dict[Gender, str]]] = Field(
        description="language -> case -> gender -> indefinite article."
    )
    connectors: dict[Literal["with", "in"], dict[str, str]] = Field(
        default_factory=dict, description="'with' (an object) and 'in' (a garment) -> language -> word."
    )
    people: dict[str, dict[str, PeopleForms]] = Field(description="English people phrase -> language -> forms.")
    nouns: dict[str, dict[str, tuple[str, Gender] | tuple[str, Gender, str]]] = Field(
        description="English name -> language -> (noun, gender[, article when the usual one is wrong])."
    )
    attributes: dict[str, dict[str, str]] = Field(description="Catalog attribute name -> language -> label.")
    sources: dict[str, str] = Field(
        default_factory=dict, description="Language -> who wrote its entries, from what, under which licence."
    )

    @model_validator(mode="after")
    def _complete(self) -> Lexicon:
        for name, langs in self.nouns.items():
            for lang, entry in langs.items():
                if lang not in self.articles or entry[1] not in self.articles[lang]["nom"]:
                    raise ValueError(f"nouns.{name}.{lang}: no {lang} article for gender {entry[1]!r}")
        return self

    def noun(self, name: str, lang: str, case: Literal["nom", "with"]) -> str | None:
        """'ein Espresso' / 'einem Bob' for the English name, or None when the lexicon lacks it."""
        entry = self.nouns.get(name.lower(), {}).get(lang)
        if entry is None:
            return None
        article = entry[2] if len(entry) > 2 else self.articles[lang][case][entry[1]]
        return f"{article} {entry[0]}".strip()  # languages without articles (pl, ja, zh) have empty ones


@lru_cache(maxsize=8)
def load_lexicon(path: Path | None = None) -> Lexicon:
    """The bundled lexicon, or the file at ``path`` (validated; ConfigError names what is wrong)."""
    where = path or Path(str(resources.files("caption_agent.prompts") / "compose" / "lexicon.yaml"))
    try:
        # libyaml's loader when present (the same data; the lexicon is the largest file a cold start reads).
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        return Lexicon.model_validate(yaml.load(Path(where).read_text(encoding="utf-8"), Loader=loader) or {})
    except (OSError, yaml.YAMLError, ValidationError) as exc:
        raise ConfigError(
            f"template lexicon {str(where)!r} is invalid: {exc}",
            fix="compare it with the bundled prompts/compose/lexicon.yaml.",
        ) from exc


@dataclass(frozen=True)
class Subject:
    """What a draft is about: ``people`` (an English people phrase or '') and/or ``thing`` (an English name),
    joined by ``link`` ('with' an object, 'in' a garment)."""

    people: str = ""
    thing: str = ""
    link: Literal["with", "in"] = "with"

    def render(self, lexicon: Lexicon, lang: str) -> tuple[str | None, str]:
        """The subject in ``lang`` as a sentence's subject, or (None, why)."""
        if lang == "en":
            return self.english(), ""
        thing = self.thing and lexicon.noun(self.thing, lang, "with" if self.people else "nom")
        if self.thing and not thing:
            return None, f"the lexicon has no {lang} name for {self.thing!r}"
        if not self.people:
            return thing or None, "" if thing else "the draft names no subject"
        forms = lexicon.people.get(self.people, {}).get(lang)
        if forms is None:
            return None, f"the lexicon has no {lang} phrase for {self.people!r}"
        if not thing:
            return forms.nom, ""
        word = lexicon.connectors.get(self.link, {}).get(lang)
        if word is None:
            return None, f"the lexicon has no {lang} word for {self.link!r}"
        return f"{forms.nom} {word} {thing}", ""

    def english(self) -> str:
        thing = f"{_article(self.thing)} {self.thing}" if self.thing else ""
        if self.people and thing:
            return f"{self.people} {self.link} {thing}"
        return self.people or thing


_PEOPLE = ("a person", "two people", "a group of people")
_CLOSE_UP = re.compile(r"^a close-up of\s+", re.IGNORECASE)
_SCENE = re.compile(
    r"\s+(?:in a mostly [a-z ]+ scene|in [a-z ]+ and [a-z ]+ tones|against an? [a-z ]+ background)$", re.IGNORECASE
)
_THING = re.compile(r"^(?:an?\s+)?([a-z][a-z' -]{0,40}[a-z])$", re.IGNORECASE)
_PERSON = re.compile(r"^(" + "|".join(_PEOPLE) + r")(?:\s+(with|and|in)\s+(.+))?$", re.IGNORECASE)
# Hedges and lists are not one name ("a cat or a dog", "probably a cat"); "cup of coffee" is.
_NOT_A_NAME = re.compile(r"\b(?:or|and|with|probably|perhaps|maybe|possibly|likely|some|the)\b", re.IGNORECASE)


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def subject_from(structured: DraftSubject | None, draft: str) -> Subject | None:
    """The subject from the drafter's structured one when it gives one (its hedged name, the people and what is
    named beside them), else read from the draft text."""
    if structured is None:
        return read_subject(draft)
    if structured.people:
        people = structured.name.lower() if structured.name.lower() in _PEOPLE else ""
        beside = _name(structured.context[0]) if structured.context else ""
        if not people:
            return read_subject(draft)
        worn = bool(beside) and f" in {structured.context[0].lower()}" in draft.lower()
        return Subject(people=people, thing=beside, link="in" if worn else "with")
    return Subject(thing=_name(structured.name)) if structured.name else None


def _name(phrase: str) -> str:
    """A vocabulary name without its article ('a cup of coffee' -> 'cup of coffee')."""
    return re.sub(r"^(?:an?|the)\s+", "", phrase.strip(), flags=re.IGNORECASE)


def read_subject(draft: str) -> Subject | None:
    """The subject of a draft in one of the lite tagger's shapes; None for anything else (never a guess)."""
    text = " ".join(draft.split()).rstrip(".").strip()
    text = _SCENE.sub("", _CLOSE_UP.sub("", text))
    person = _PERSON.match(text)
    if person:
        people, link, rest = person.group(1).lower(), (person.group(2) or "with").lower(), person.group(3)
        thing = _thing(rest) if rest else ""
        if thing is None:
            return None
        return Subject(people=people, thing=thing, link="in" if link == "in" else "with")
    thing = _thing(text)
    return Subject(thing=thing) if thing else None


def _thing(text: str) -> str | None:
    match = _THING.match(text.strip())
    if match is None or _NOT_A_NAME.search(match.group(1)):
        return None
    return match.group(1)
