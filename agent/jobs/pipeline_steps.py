"""The caption pipeline cut into streaming steps (one Ray actor pool each), and zero-cost steps for tests.

Each step holds its own CaptionAgent, which loads only the stages that step touches (the agent builds its
components on first use): the draft step loads the drafter and the image screen, the rank step the ranker and
the retriever, the refine step the refiner and the policy. A WorkItem (request, decoded working copy, drafts,
facts) travels between steps pickled, so the image is decoded once, in the draft step.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any, Sequence

from caption_agent.jobs.caption_job import CaptionStage

# The steps of ray_stream.CAPTION_STEPS.


class _AgentStep:
    STAGES: tuple[str, ...] = ()

    def __init__(self, config: dict[str, Any], recaption: dict[str, Any] | None = None) -> None:
        self._stage = CaptionStage(config, recaption=recaption)

    def _run(self, work: list[Any]) -> list[Any]:
        # The pipeline's own batched stages, in its order (CaptionAgent._run runs all of them at once).
        agent = self._stage.agent
        for name in self.STAGES:
            live = [w for w in work if w.live]
            if live:
                getattr(agent, name)(live)
        for w in work:
            w.exc = None  # the result records the error; exceptions need not travel
        return work


class DraftStep(_AgentStep):
    """Decode, screen and draft (the GPU step when the drafter is a VLM)."""

    STAGES = ("_prepare", "_draft")

    def __call__(self, pairs: Sequence[tuple[Any, Any]]) -> list[Any]:
        from caption_agent.work import WorkItem

        agent = self._stage.agent
        return self._run([WorkItem(agent.with_defaults(item.request())) for item, _ in pairs])


class RankStep(_AgentStep):
    """Rank drafts (CLIP-S or consensus) and ground them in catalog facts (CPU)."""

    STAGES = ("_rank", "_ground")

    def __call__(self, pairs: Sequence[tuple[Any, Any]]) -> list[Any]:
        return self._run([work for _, work in pairs])


class RefineStep(_AgentStep):
    """Refine (vLLM or local, the refiner's max_concurrency bounds requests in flight) and moderate; records."""

    STAGES = ("_refine_and_moderate",)

    def __call__(self, pairs: Sequence[tuple[Any, Any]]) -> list[dict[str, Any]]:
        work = self._run([work for _, work in pairs])
        agent = self._stage.agent
        if agent.config.policy.review_queue is not None:
            agent._queue_for_review([w.result for w in work if w.result is not None])
        items = [item for item, _ in pairs]
        records: list[dict[str, Any]] = self._stage.records(items, [w.result for w in work])
        return records


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
