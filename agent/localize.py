"""Localization in the library: a caption's structured result in other locales, through the refine and moderate
stages of the pipeline.

A ``Source`` is what one caption is made of (its text, style, facts, subject, the text read from the image,
quoted as written and never translated, the faces its screen counted); ``localization_state`` makes the
``CaptionState`` of one (source, target locale) pair, with the source caption as the draft. The source stands in
for a rejected answer only when it is already in the target language and script; otherwise a rejected answer goes
to review and no usable answer is a retryable error. ``CaptionAgent.localize`` is the call for one result; the
batch job and the service build the states of many pairs and run them at once (``run_localization``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator

from caption_agent.errors import CaptionAgentError
from caption_agent.locales import normalize_locale, writing_system
from caption_agent.records import digest, fingerprint
from caption_agent.schemas import CaptionResult, DraftSubject, GroundingFact
from caption_agent.state import CaptionState


@dataclass(frozen=True)
class Source:
    """A caption to localize, with its structured parts."""

    text: str
    style: str
    locale: str | None = None  # of the source caption; None: unknown (then it never stands in)
    max_chars: int | None = None
    faces: int | None = None  # people its image's screen counted; None: unknown (the people rule holds)
    facts: Sequence[GroundingFact] = ()
    subject: DraftSubject | None = None
    image_text: str = ""
    draft: str | None = None  # the ranked draft it was written from (names the subject when none is given)

    @classmethod
    def of(cls, result: CaptionResult, style: str | None = None) -> Source:
        """The source a caption result makes (its text must be set: ``ok`` or ``review`` with text)."""
        if result.text is None:
            raise ValueError(f"result {result.key or ''} has no text to localize (status {result.status}).")
        return cls(
            text=result.text,
            style=style or result.style,
            locale=result.locale,
            faces=screened_faces([d.model_dump(mode="json") for d in result.decisions]),
            facts=list(result.facts),
            subject=result.subject,
            image_text=result.image_text,
            draft=result.draft,
        )

    def what(self) -> DraftSubject | None:
        """What the caption is about: its structured subject, else the subject read from its ranked draft (the
        drafter's fixed shapes), else None (the template then reads the caption text itself)."""
        if self.subject is not None:
            return self.subject
        from caption_agent.refiners.subject import read_subject

        read = read_subject(self.draft) if self.draft else None
        if read is None:
            return None
        if read.people:
            return DraftSubject(name=read.people, people=1, context=[read.thing] if read.thing else [], mass=1.0)
        return DraftSubject(name=read.thing, mass=1.0)


def screened_faces(decisions: Sequence[Any]) -> int | None:
    """The face count the image screen recorded among a result's decisions (as JSON); None when it did not
    count."""
    for decision in decisions:
        if isinstance(decision, dict) and decision.get("rule") == "image_safety":
            faces = (decision.get("details") or {}).get("faces")
            return faces if isinstance(faces, int) and not isinstance(faces, bool) else None
    return None


@dataclass
class Pair:
    """One (source, target locale) pair and the key its result carries. ``subject`` as given (already read);
    ``cache_key`` / ``source_key`` / ``id``: set by ``row_pairs`` (the batch job and the service share them)."""

    key: str | None
    text: str
    style: str
    locale: str
    source_locale: str | None = None
    max_chars: int | None = None
    faces: int | None = None
    facts: list[Any] = field(default_factory=list)  # GroundingFact, or its JSON
    subject: Any = None  # DraftSubject, or its JSON
    image_text: str = ""
    cache_key: str = ""
    source_key: str = ""
    id: str | None = None


class CaptionRow(BaseModel):
    """A plain caption to localize, as users write it (JSONL/CSV/Parquet)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    text: str = Field(
        validation_alias=AliasChoices("text", "caption"),
        min_length=1,
        max_length=5000,
        description="The source caption.",
    )
    id: str | None = Field(None, max_length=256, description="Caller's id, echoed in the output.")
    style: str | None = Field(None, max_length=64, description="Style preset of the caption.")
    locale: str | None = Field(None, max_length=35, description="Locale of the source caption.")
    sku: str | None = Field(None, max_length=128, description="Product the caption describes.")
    max_chars: int | None = Field(None, ge=10, le=5000, description="Length budget.")
    faces: int | None = Field(
        None,
        ge=0,
        le=1000,
        description="People the source image showed, as its screen "
        "counted them; unknown (unset) holds captions for review under the people rule.",
    )
    facts: list[GroundingFact] = Field(default_factory=list, description="Facts: strings or GroundingFact objects.")
    draft: str | None = Field(
        None, max_length=2000, description="The ranked draft the caption was written from (a caption job's `draft`)."
    )
    subject: DraftSubject | None = Field(
        None, description="The drafted subject (a caption job's `subject`): named in each target language."
    )
    image_text: str = Field(
        "", max_length=2000, description="Text read from the image: quoted as written, never translated."
    )

    @field_validator("facts", mode="before")
    @classmethod
    def _facts(cls, value: Any, info: Any) -> Any:
        if isinstance(value, str):  # a CSV cell: JSON list, or one fact per line
            value = value.strip()
            value = json.loads(value) if value.startswith("[") else [v for v in value.splitlines() if v.strip()]
        sku = (info.data or {}).get("sku") or ""
        return [
            {"id": f"{sku or 'input'}:fact{i}", "sku": sku, "field": "text", "text": f, "score": 1.0}
            if isinstance(f, str)
            else f
            for i, f in enumerate(value or [])
        ]


def row_pairs(
    row: CaptionRow, locales: Sequence[str], *, style: str, source_key: str = "", origin: str = ""
) -> Iterator[Pair]:
    """One pair per target locale for one caption row. Cache keys depend only on the caption, its facts and the
    target settings, so the batch job and the HTTP service share cache entries; keys add the row's ``origin``
    (batch jobs), so every input row x locale gets its own record even when rows repeat."""
    facts = [f.model_dump(mode="json") for f in row.facts]
    # Every part of a fact counts: the grounding and people rules read its structured fields too.
    facts_hash = hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:16]
    subject = Source(text=row.text, style=row.style or "", subject=row.subject, draft=row.draft).what()
    subject_json = subject.model_dump(mode="json") if subject is not None else None
    text_hash = hashlib.sha256(row.text.encode("utf-8")).hexdigest()
    source_key = source_key or row.id or digest("source", text_hash, facts_hash)
    for locale in locales:
        fields = {
            "style": row.style or style,
            "locale": locale,
            "max_chars": row.max_chars,
            "source_locale": row.locale,
            "facts": facts_hash,
            "faces": row.faces,
            "subject": subject_json,
            "image_text": row.image_text,
        }
        cache_key = digest("localize", text_hash, fingerprint(fields))
        yield Pair(
            key=digest("localize", cache_key, source_key, *([origin] if origin else [])),
            text=row.text,
            style=row.style or style,
            locale=locale,
            source_locale=row.locale,
            max_chars=row.max_chars,
            faces=row.faces,
            facts=facts,
            subject=subject_json,
            image_text=row.image_text,
            cache_key=cache_key,
            source_key=source_key,
            id=row.id,
        )


def localization_state(agent: Any, pair: Pair | Any) -> CaptionState:
    """The state of one pair (a ``Pair``, or anything with its fields: the batch job's ``LocalizeItem``); bad
    input (unknown style, unreadable facts) fails it at ``input``."""
    from pydantic import ValidationError

    from caption_agent.prompts import load_preset

    state = CaptionState(
        key=pair.key,
        style_name=pair.style,
        locale=pair.locale,
        max_chars=pair.max_chars,
        source=pair.text,
        faces=pair.faces,
        image_text=pair.image_text,
        draft_ok=_same_language(pair.source_locale, pair.locale),
    )
    try:
        state.preset = load_preset(pair.style, agent.config.prompts_dir)
        state.facts = [GroundingFact.model_validate(f) for f in pair.facts]
        state.source_subject = DraftSubject.model_validate(pair.subject) if pair.subject else None
    except (CaptionAgentError, ValidationError) as exc:
        state.fail(exc, "input")
        return state
    state.stamp(agent.policy)
    return state


def run_localization(agent: Any, states: Sequence[CaptionState]) -> None:
    """The refine and moderate stages over ``states`` (every one settled: a result each)."""
    agent.stages.slice("refine", "moderate").run(states)


def localize(
    agent: Any,
    result: CaptionResult,
    locales: Sequence[str],
    *,
    style: str | None = None,
    keys: Sequence[str | None] | None = None,
) -> list[CaptionResult]:
    """``result`` in each of ``locales`` (normalized; a bad one raises). ``keys``: each result's key (default:
    the source's key)."""
    source = Source.of(result, style)
    targets = [normalize_locale(loc) for loc in locales]
    states = [localization_state(agent, pair) for pair in pairs(source, targets, keys or [result.key] * len(targets))]
    run_localization(agent, states)
    return [s.done for s in states]


def pairs(source: Source, locales: Sequence[str], keys: Sequence[str | None]) -> list[Pair]:
    subject = source.what()
    return [
        Pair(
            key=key,
            text=source.text,
            style=source.style,
            locale=locale,
            source_locale=source.locale,
            max_chars=source.max_chars,
            faces=source.faces,
            facts=list(source.facts),
            subject=subject,
            image_text=source.image_text,
        )
        for key, locale in zip(keys, locales)
    ]


def _same_language(source: str | None, target: str) -> bool:
    """Whether the source caption is already in the target language and script (then it may stand in as a
    fallback): en-US for en-GB yes, zh-TW (Traditional) for zh-CN (Simplified) no."""
    try:
        return source is not None and writing_system(source) == writing_system(target)
    except CaptionAgentError:  # an unreadable source locale: assume another language
        return False
