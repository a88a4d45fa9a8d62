"""The caption pipeline as public stages: screen -> draft -> rank -> ground -> refine -> moderate.

A stage has a ``name`` and ``run(states)``, over the live ``CaptionState`` of a batch (one per item); it reads
and writes the states, and ends an item early by giving it a result (an error, a block). ``build_stages`` returns
them in order; ``Stages.slice`` gives a named run of them (the Ray steps run ``slice("screen", "draft")``...,
localization ``slice("refine", "moderate")``).
"""

from __future__ import annotations

from typing import Any, Iterator, Protocol, Sequence

from caption_agent.config import AgentConfig
from caption_agent.state import CaptionState

ORDER = ("screen", "draft", "rank", "ground", "refine", "moderate")
# Items per chunk when the leading stages run ahead: small enough that the first chunk (which nothing overlaps) is
# a small share of a batch, large enough for the drafter's and the embedder's batches and a server refiner's
# concurrent requests (16 in flight by default).
CHUNK = 16
AHEAD = 2  # chunks the leading stages may be ahead of the others (bounds the images loaded at once)


class Stage(Protocol):
    name: str
    # True when the stage may run on other items in other threads at once: beside itself (one item per core) and
    # beside the stages after it (on the next chunk of a batch). Such a stage shares nothing mutable with them.
    runs_ahead: bool

    def run(self, states: list[CaptionState]) -> None: ...


class Stages:
    """Stages in the order they run."""

    def __init__(self, stages: Sequence[Stage]) -> None:
        self.stages = list(stages)

    def __iter__(self) -> Iterator[Stage]:
        return iter(self.stages)

    def __len__(self) -> int:
        return len(self.stages)

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.stages]

    def slice(self, first: str, last: str) -> Stages:
        """The stages from ``first`` to ``last``, both included."""
        names = self.names
        for name in (first, last):
            if name not in names:
                raise KeyError(f"no stage {name!r}; the stages are {', '.join(names)}")
        return Stages(self.stages[names.index(first) : names.index(last) + 1])

    def run(self, states: Sequence[CaptionState]) -> None:
        """Run each stage over the states still live.

        A batch whose leading stages run ahead (the screen) goes in chunks of ``CHUNK`` items: those stages work item
        by item, one per core, up to ``AHEAD`` chunks ahead of the later stages, which take each chunk whole (the
        drafter's and the embedder's batches). The cores stay busy: screening is onnxruntime on
        one-thread sessions without the GIL, the later stages are mostly Python. Results are the same as stage by
        stage over the whole batch (tests/agent/test_stages_ahead.py)."""
        from caption_agent.onnx_models import env_threads

        lead = self._leading()
        # On one core (a Ray actor's share, OMP_NUM_THREADS=1) there is nothing to overlap.
        if lead > 0 and len(states) > 1 and env_threads() > 1:
            self._run_ahead(states, lead)
        else:
            _run_each(self.stages, states)

    def _leading(self) -> int:
        """How many stages at the front run ahead (a stage of the caller's own that does not say never does)."""
        for i, stage in enumerate(self.stages):
            if not getattr(stage, "runs_ahead", False):
                return i
        return len(self.stages)

    def _run_ahead(self, states: Sequence[CaptionState], lead: int) -> None:
        from collections import deque
        from concurrent.futures import Future, ThreadPoolExecutor

        from caption_agent.onnx_models import env_threads

        first, rest = self.stages[:lead], self.stages[lead:]
        chunks = [list(states[i : i + CHUNK]) for i in range(0, len(states), CHUNK)]
        pool = ThreadPoolExecutor(env_threads(), thread_name_prefix="caption-ahead")

        def submit(chunk: list[CaptionState]) -> list[Future[None]]:
            # One task per item, so no core waits at a chunk's end for the others to finish theirs.
            return [pool.submit(_run_each, first, [state]) for state in chunk]

        try:
            # The first item here, alone: what the leading stages build on first use (the policy, its models) is
            # built once, before any thread asks for it.
            _run_each(first, chunks[0][:1])
            ahead = deque(submit(chunk) for chunk in [chunks[0][1:], *chunks[1:AHEAD]])
            for k, chunk in enumerate(chunks):
                for done in ahead.popleft():
                    done.result()  # this chunk's first stages are done (or a crash is raised here)
                if k + AHEAD < len(chunks):
                    ahead.append(submit(chunks[k + AHEAD]))
                _run_each(rest, chunk)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


def _run_each(stages: Sequence[Stage], states: Sequence[CaptionState]) -> None:
    for stage in stages:
        live = [s for s in states if s.live]
        if live:
            stage.run(live)


def stages_of(parts: Any) -> Stages:
    """The stages over ``parts`` (a ``Components``, such as a ``CaptionAgent``): each reads its components from
    it when it runs."""
    from caption_agent.stages.draft import DraftStage
    from caption_agent.stages.ground import GroundStage
    from caption_agent.stages.moderate import ModerateStage
    from caption_agent.stages.rank import RankStage
    from caption_agent.stages.refine import RefineStage
    from caption_agent.stages.screen import ScreenStage

    return Stages([cls(parts) for cls in (ScreenStage, DraftStage, RankStage, GroundStage, RefineStage, ModerateStage)])


def build_stages(config: AgentConfig | None = None, **given: Any) -> Stages:
    """The ordered stages, their components built from ``config`` on first use (or ``given``: drafter=, ranker=,
    retriever=, refiner=, policy=, embedder=)."""
    from caption_agent.stages.components import Components

    return stages_of(Components(config, **given))
