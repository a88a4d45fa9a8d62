"""The caption pipeline cut into streaming steps (one Ray actor pool each), and zero-cost steps for tests.

Each step holds its own CaptionAgent, which loads only the stages that step touches (the agent builds its
components on first use): the draft step loads the drafter and the image screen, the rank step the ranker and
the retriever, the refine step the refiner and the policy. Each step runs a named slice of the agent's stages
(``agent.stages.slice("screen", "draft")``...); a CaptionState (request, decoded working copy, drafts, facts)
travels between steps pickled, so the image is decoded once, in the draft step.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any, Sequence

from caption_agent.config import AgentConfig
from caption_agent.jobs.ray_sources import StepSpec
from caption_agent.jobs.recaption import Recaptioner


class AgentRecords:
    """A CaptionAgent built from a config on first use, and the job records of its results (with the
    recaptioning fields where a row had a caption)."""

    def __init__(
        self, config: dict[str, Any] | None = None, agent: Any = None, recaption: dict[str, Any] | None = None
    ) -> None:
        self._config = config
        self._agent = agent
        self._recaption = recaption or {}
        self._recaptioner: Recaptioner | None = None

    @property
    def agent(self) -> Any:
        if self._agent is None:
            from caption_agent.pipeline import CaptionAgent

            self._agent = CaptionAgent(AgentConfig.load(**(self._config or {})))
        return self._agent

    def records(self, items: Sequence[Any], results: Sequence[Any]) -> list[dict[str, Any]]:
        """Each item's record from its CaptionResult, with the recaptioning fields where a row had a caption."""
        records = [
            item.annotate(result.model_dump(mode="json", exclude_none=True)) for item, result in zip(items, results)
        ]
        if any(i.original is not None for i in items):
            if self._recaptioner is None:
                self._recaptioner = Recaptioner(self.agent, **self._recaption)
            self._recaptioner.apply(items, records)
        return records

    def close(self) -> None:
        if self._agent is not None:
            self._agent.close()


class _AgentStep:
    """A named slice of the agent's stages (``FIRST`` to ``LAST``) over the states that travel between steps."""

    FIRST, LAST = "", ""

    def __init__(self, config: dict[str, Any], recaption: dict[str, Any] | None = None) -> None:
        self._stage = AgentRecords(config, recaption=recaption)

    def _run(self, states: list[Any]) -> list[Any]:
        agent = self._stage.agent
        agent.run(states, agent.stages.slice(self.FIRST, self.LAST))
        for s in states:
            s.exc = None  # the result records the error; exceptions need not travel
        return states


class DraftStep(_AgentStep):
    """Decode, screen and draft (the GPU step when the drafter is a VLM)."""

    FIRST, LAST = "screen", "draft"

    def __call__(self, pairs: Sequence[tuple[Any, Any]]) -> list[Any]:
        from caption_agent.state import CaptionState

        agent = self._stage.agent
        return self._run([CaptionState.of(agent.with_defaults(item.request())) for item, _ in pairs])


class RankStep(_AgentStep):
    """Rank drafts (CLIP-S or consensus) and ground them in catalog facts (CPU)."""

    FIRST, LAST = "rank", "ground"

    def __call__(self, pairs: Sequence[tuple[Any, Any]]) -> list[Any]:
        return self._run([state for _, state in pairs])


class RefineStep(_AgentStep):
    """Refine (vLLM or local, the refiner's max_concurrency bounds requests in flight) and moderate; records."""

    FIRST, LAST = "refine", "moderate"

    def __call__(self, pairs: Sequence[tuple[Any, Any]]) -> list[dict[str, Any]]:
        states = self._run([state for _, state in pairs])
        return self._stage.records([item for item, _ in pairs], [s.done for s in states])


def caption_steps(config: dict[str, Any], recaption: dict[str, Any]) -> tuple[StepSpec, ...]:
    """The caption pipeline as streaming steps: draft, rank + ground, refine + moderate."""
    kwargs = {"config": config, "recaption": recaption}
    return tuple(StepSpec(target, kwargs, role) for target, role in CAPTION_STEPS)


# (target, role): role picks the step's resources in ray_stream._remote_args.
CAPTION_STEPS = (
    ("caption_agent.jobs.pipeline_steps:DraftStep", "draft"),
    ("caption_agent.jobs.pipeline_steps:RankStep", "cpu"),
    ("caption_agent.jobs.pipeline_steps:RefineStep", "io"),
)


class NoopStep:
    """A zero-cost backend: an ``ok`` record per item at once (measures the runner, not the models)."""

    def __init__(self, **_: Any) -> None:
        pass

    def __call__(self, pairs: Sequence[tuple[Any, Any]]) -> list[dict[str, Any]]:
        return [item.annotate({"key": item.key, "status": "ok", "text": "noop"}) for item, _ in pairs]


class ProbeStep:
    """A zero-cost step that records where it ran (node id, resources assigned to its actor): placement checks."""

    def __init__(self, **_: Any) -> None:
        import ray

        ctx = ray.get_runtime_context()
        resources: dict[str, float] = ctx.get_assigned_resources()  # type: ignore[no-untyped-call,unused-ignore]
        self.where = {"node_id": ctx.get_node_id(), "resources": resources}

    def __call__(self, pairs: Sequence[tuple[Any, Any]]) -> list[Any]:
        return [item.annotate({"key": item.key, "status": "ok", "text": "", "ray": self.where}) for item, _ in pairs]


class BurnStep:
    """A CPU-bound stage with a fixed amount of work per item (``rounds`` SHA-256 passes over 256 KiB) on one
    thread: its items/s scale with the cores it gets, which is what the actor-count benchmark measures."""

    def __init__(self, rounds: int = 40, threads: int = 1, final: bool = True, **_: Any) -> None:
        os.environ["OMP_NUM_THREADS"] = str(threads)
        self.rounds, self.final = rounds, final
        self.buf = os.urandom(256 * 1024)

    def __call__(self, pairs: Sequence[tuple[Any, Any]]) -> list[Any]:
        out: list[Any] = []
        for item, state in pairs:
            digest = b""
            for _ in range(self.rounds):
                digest = hashlib.sha256(self.buf + digest).digest()
            if self.final:
                out.append(item.annotate({"key": item.key, "status": "ok", "text": digest.hex()[:16]}))
            else:
                out.append(state)
        return out
