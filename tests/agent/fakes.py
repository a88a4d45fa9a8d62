"""Scripted stages for the pipeline's and the loop's branches: each answers from a queue, so a test says exactly
what the model "said" and checks what the agent did with it. The policy engine stays the real one."""

from __future__ import annotations

from collections import deque
from typing import Any, Sequence

import numpy as np

from caption_agent.drafters.base import Drafter
from caption_agent.ranking import Ranker
from caption_agent.refiners.base import RefineJob, Refiner
from caption_agent.schemas import Candidate, Draft, ImageInfo, RefinedCaption


class FakeDrafter(Drafter):
    """The same drafts for every image."""

    name = "lite"  # stands in for the config's default backend

    def __init__(self, drafts: Sequence[str]) -> None:
        self.drafts, self.model_id, self.calls = list(drafts), "fake-drafter", 0
        self.styles: list[str | None] = []  # the style of each draft() call

    def draft(self, images: Sequence[Any], infos: Sequence[ImageInfo], n: int, style: str | None = None) -> list[Draft]:
        self.calls += 1
        self.styles.append(style)
        cands = [Candidate(text=t, drafter="fake", score=1.0 - i / 10) for i, t in enumerate(self.drafts[:n])]
        return [Draft(image=info, candidates=cands, model_id=self.model_id) for info in infos]


class FakeRanker(Ranker):
    """Keeps the drafter's order; quality 1.0."""

    name = "fake"

    def scores(self, candidates: Sequence[Candidate], image: Any = None) -> np.ndarray:
        return np.ones(len(candidates))


class ScriptedRefiner(Refiner):
    """Answers each job from a queue: a caption (str), or an exception to return in its place."""

    name = "scripted"

    def __init__(self, answers: Sequence[str | BaseException]) -> None:
        self.answers: deque[str | BaseException] = deque(answers)
        self.model_id = "scripted-refiner"
        self.jobs: list[RefineJob] = []

    def complete(self, messages: list[dict[str, str]], job: RefineJob) -> str:  # pragma: no cover - unused
        raise NotImplementedError

    def refine_many(self, jobs: Sequence[RefineJob]) -> list[RefinedCaption | Exception]:
        out: list[RefinedCaption | Exception] = []
        for job in jobs:
            self.jobs.append(job)
            answer = self.answers.popleft()
            out.append(answer if isinstance(answer, Exception) else RefinedCaption(caption=answer))
        return out


class CrashingPolicy:
    """The real engine, except that ``method`` (default ``judge``, what the pipeline moderates with) crashes: a
    fault the real engine cannot be made to produce."""

    def __init__(self, engine: Any, error: Exception | None = None, method: str = "judge") -> None:
        self._engine, self._error, self._method = engine, error or RuntimeError("rule blew up"), method

    def __getattr__(self, name: str) -> Any:
        if name == self._method:
            return self._raise
        return getattr(self._engine, name)

    def _raise(self, *args: Any, **kwargs: Any) -> Any:
        raise self._error
