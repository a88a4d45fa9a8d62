"""One caption's state while it moves through the stages (``CaptionState``), and the per-stage timer.

A state is created per item (an image request, or a caption to localize), every stage reads and writes it, and
it ends with exactly one ``result``. The refiner and the policy engine keep their public inputs: ``refine_job()``
and ``moderation()`` derive a ``RefineJob`` and a ``ModerationContext`` from the state at the call, nothing is
copied back.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Sequence

from caption_agent import __version__
from caption_agent.errors import CaptionAgentError
from caption_agent.glossary import Glossary
from caption_agent.policies.context import ModerationContext
from caption_agent.prompts import StylePreset, prompt_hash
from caption_agent.refiners.base import RefineJob
from caption_agent.refiners.chain import CannotComposeError
from caption_agent.schemas import (
    Candidate,
    CaptionRequest,
    CaptionResult,
    Draft,
    DraftSubject,
    ErrorRecord,
    GroundingFact,
    ModerationOutcome,
    PolicyDecision,
    ProductHint,
    Provenance,
)


@dataclass
class CaptionState:
    """Everything known about one item: what was asked, what each stage found, and how it ended."""

    key: str | None
    style_name: str  # the requested style; ``preset`` once loaded
    locale: str  # the requested locale; normalized by the screen stage
    request: CaptionRequest | None = None  # the image request (None: a caption being localized)
    max_chars: int | None = None
    hint: ProductHint = field(default_factory=ProductHint)
    old_caption: str = ""  # the image's existing caption (recaptioning): cleaned by the refine stage
    preset: StylePreset | None = None
    image: Any = None
    draft: Draft | None = None  # the drafter's output (image info, candidates, subject)
    ranked: list[Candidate] = field(default_factory=list)
    confidence: float | None = None  # the ranker's; None when nothing was ranked (localization)
    source: str = ""  # the text the refiner rewrites when nothing was ranked (the caption being localized)
    source_subject: DraftSubject | None = None  # what that source caption is about
    facts: list[GroundingFact] = field(default_factory=list)
    image_text: str = ""
    faces: int | None = None  # people the screen found; None when no detector ran (the people rule holds)
    decisions: list[PolicyDecision] = field(default_factory=list)
    facts_used: list[str] = field(default_factory=list)
    provenance: Provenance = field(default_factory=Provenance)
    # The refine stage: whether the draft may stand in, the prompt's feedback and terms, the moderation memory.
    draft_ok: bool = True
    feedback: list[str] = field(default_factory=list)
    glossary: Glossary | None = None
    constraints: list[str] = field(default_factory=list)
    neutralised: list[str] = field(default_factory=list)
    input_flags: list[PolicyDecision] = field(default_factory=list)
    # Walking the refiner chain: a link's answer the policy rejected (outcome, text, link), a link's statement of
    # the data it lacked, the model of each link that ran; then the settled outcome and text.
    rejected: tuple[ModerationOutcome, str, str] | None = None
    gap: CannotComposeError | None = None
    models: dict[str, str] = field(default_factory=dict)
    outcome: ModerationOutcome | None = None
    text: str | None = None
    result: CaptionResult | None = None
    exc: BaseException | None = None

    @classmethod
    def of(cls, request: CaptionRequest) -> CaptionState:
        """The state of an image request."""
        return cls(
            key=request.key,
            style_name=request.style,
            locale=request.locale,
            request=request,
            max_chars=request.max_chars,
            hint=request.hint,
            old_caption=request.old_caption or "",
        )

    # --- what the stages read ------------------------------------------------------------------------------
    @property
    def style(self) -> StylePreset:
        """The loaded preset: set by the first stage for every item still live."""
        assert self.preset is not None, "preset read before the screen stage"
        return self.preset

    @property
    def drafted(self) -> Draft:
        assert self.draft is not None, "draft read before the screen stage"
        return self.draft

    @property
    def best(self) -> str:
        """The text the refiner rewrites and the draft that may stand in: the ranked best draft, or the source."""
        return self.ranked[0].text if self.ranked else self.source

    @property
    def subject(self) -> DraftSubject | None:
        """What the image shows as the drafter structured it (None when this run drafted nothing)."""
        return self.draft.subject if self.draft is not None else None

    @property
    def live(self) -> bool:
        return self.result is None

    @property
    def settled(self) -> bool:
        """The refine stage is done with it: an outcome, or a result (an error, a hold by a crashed rule)."""
        return self.outcome is not None or self.result is not None

    @property
    def done(self) -> CaptionResult:
        assert self.result is not None, "result read before the item finished"
        return self.result

    # --- the public inputs of the refiner and the policy engine, derived at the call ----------------------
    def refine_job(self) -> RefineJob:
        return RefineJob(
            preset=self.style,
            draft=self.best,
            locale=self.locale,
            facts=list(self.facts),
            max_chars=self.max_chars,
            image_text=self.image_text,
            feedback=list(self.feedback),
            subject=self.subject if self.draft is not None else self.source_subject,
            old_caption=self.old_caption,
            glossary=self.glossary,
            constraints=list(self.constraints),
        )

    def moderation(self, attempts_left: int = 0, is_fallback: bool = False) -> ModerationContext:
        """The engine's context; ``neutralised`` and ``input_flags`` are this state's lists (the engine adds to
        them when it prepares inputs and reads them on every review)."""
        return ModerationContext(
            preset=self.style,
            locale=self.locale,
            draft=self.best,
            facts=self.facts,
            image_text=self.image_text,
            max_chars=self.max_chars,
            faces=self.faces,
            sku=self.hint.sku,
            attempts_left=attempts_left,
            is_fallback=is_fallback,
            confidence=self.confidence,
            subject=self.subject,
            neutralised=self.neutralised,
            input_flags=self.input_flags,
        )

    # --- recording ------------------------------------------------------------------------------------------
    def record(self, decisions: Sequence[PolicyDecision]) -> None:
        """Add decisions, each once: a rule that says the same on every attempt is recorded one time."""
        self.decisions += [d for d in decisions if d not in self.decisions]

    def stamp(self, policy: Any) -> None:
        """Provenance known before any model runs, so results that end early carry it too: package, policy and
        prompt versions."""
        self.provenance.package_version = __version__
        self.provenance.policy_version = policy.version
        self.provenance.policy_hash = policy.hash
        if self.preset is not None:
            self.provenance.prompt_version = f"{self.preset.name}@{self.preset.version}"
            self.provenance.prompt_hash = prompt_hash(self.preset)

    def settle(self, outcome: ModerationOutcome, text: str | None, by: str = "") -> None:
        """The refine stage's ending: publish ``text`` under ``outcome``; ``by`` is the link that wrote it."""
        self.record(outcome.decisions)
        self.outcome, self.text = outcome, (text if outcome.action != "block" else None)
        self.provenance.refined_by = by if self.text is not None else ""
        if self.text is not None and by in self.models:  # the link that wrote the text, not the last one tried
            self.provenance.refiner, self.provenance.refiner_model = by, self.models[by]

    def finish(self, outcome: ModerationOutcome, text: str | None) -> None:
        """The one place a result is built from a state: the outcome's action sets its status."""
        from caption_agent.policies.reasons import hold_reasons

        self.record(outcome.decisions)
        status = {"block": "blocked", "review": "review"}.get(outcome.action, "ok")
        self.result = CaptionResult(
            key=self.key,
            status=status,
            text=text if status != "blocked" else None,
            style=self.style.name,
            locale=self.locale,
            image=self.draft.image if self.draft else None,
            draft=self.best or None,
            candidates=self.ranked,
            confidence=round(self.confidence, 4) if self.ranked and self.confidence is not None else None,
            facts=self.facts,
            facts_used=self.facts_used,
            decision=outcome.action,
            decisions=self.decisions,
            reasons=hold_reasons(self.decisions, outcome.action),
            provenance=self.provenance,
            subject=self.subject,
            image_text=self.image_text,
            hint=None if self.hint.is_empty() else self.hint,
        )

    def fail(self, exc: BaseException, stage: str) -> None:
        self.exc = exc
        record = (
            exc.to_record() if isinstance(exc, CaptionAgentError) else {"type": type(exc).__name__, "message": str(exc)}
        )
        self.result = CaptionResult(
            key=self.key,
            status="error",
            style=self.style_name,
            locale=self.request.locale if self.request is not None else self.locale,
            image=self.draft.image if self.draft else None,
            error=ErrorRecord(stage=stage, **record),
            provenance=self.provenance,
            hint=None if self.hint.is_empty() else self.hint,
        )


class StageTimer:
    """Adds the elapsed time, shared equally, to each item's ``provenance.timings_ms[stage]``."""

    def __init__(self, items: Sequence[Any], stage: str) -> None:
        self.items, self.stage = items, stage

    def __enter__(self) -> None:
        self.start = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        share = (time.perf_counter() - self.start) * 1000 / max(1, len(self.items))
        for item in self.items:
            item.provenance.timings_ms[self.stage] = round(item.provenance.timings_ms.get(self.stage, 0) + share, 2)
