"""Working state of one caption request while a batch moves through the stages, and the per-stage timer."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Sequence

from caption_agent.errors import CaptionAgentError
from caption_agent.prompts import StylePreset
from caption_agent.schemas import (
    Candidate,
    CaptionRequest,
    CaptionResult,
    Draft,
    ErrorRecord,
    GroundingFact,
    PolicyDecision,
    ProductHint,
    Provenance,
)


@dataclass
class WorkItem:
    """Working state of one request while the batch moves through the stages."""

    request: CaptionRequest
    result: CaptionResult | None = None  # set when the item is finished (error, blocked) before the end
    preset: StylePreset | None = None
    locale: str = ""
    image: Any = None
    draft: Draft | None = None
    ranked: list[Candidate] = field(default_factory=list)
    confidence: float = 0.0
    facts: list[GroundingFact] = field(default_factory=list)
    image_text: str = ""
    faces: int | None = None  # people the screen found; None when no detector ran (the people rule holds)
    decisions: list[PolicyDecision] = field(default_factory=list)
    facts_used: list[str] = field(default_factory=list)
    provenance: Provenance = field(default_factory=Provenance)
    exc: BaseException | None = None

    @property
    def style(self) -> StylePreset:
        """The loaded preset: set by the first stage for every item still live."""
        assert self.preset is not None, "preset read before the prepare stage"
        return self.preset

    @property
    def drafted(self) -> Draft:
        assert self.draft is not None, "draft read before the prepare stage"
        return self.draft

    @property
    def done(self) -> CaptionResult:
        assert self.result is not None, "result read before the item finished"
        return self.result

    @property
    def hint(self) -> ProductHint | None:
        """The request's product hint as a result keeps it (None when the request gave none)."""
        return None if self.request.hint.is_empty() else self.request.hint

    @property
    def live(self) -> bool:
        return self.result is None

    def fail(self, exc: BaseException, stage: str) -> None:
        self.exc = exc
        record = (
            exc.to_record() if isinstance(exc, CaptionAgentError) else {"type": type(exc).__name__, "message": str(exc)}
        )
        self.result = CaptionResult(
            key=self.request.key,
            status="error",
            style=self.request.style,
            locale=self.request.locale,
            image=self.draft.image if self.draft else None,
            error=ErrorRecord(stage=stage, **record),
            provenance=self.provenance,
            hint=self.hint,
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
