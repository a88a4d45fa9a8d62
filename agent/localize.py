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

from dataclasses import dataclass, field
from typing import Any, Sequence

from caption_agent.errors import CaptionAgentError
from caption_agent.locales import normalize_locale, writing_system
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
    """One (source, target locale) pair and the key its result carries. ``subject`` as given (already read)."""

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
