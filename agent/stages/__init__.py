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


class Stage(Protocol):
    name: str

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
        """Run each stage over the states still live."""
        for stage in self.stages:
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
