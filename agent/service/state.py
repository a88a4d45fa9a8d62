"""``ServiceState``: what the routers share (``request.app.state.service``, reached through ``deps.State``): the
agent, its single model thread, the batcher, metrics and the key checker."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from caption_agent.service.settings import ServiceSettings

_READY_TTL_S = 5.0


class ServiceState:
    """The app's shared state; the agent's config is read, never changed."""

    def __init__(self, agent: Any, settings: ServiceSettings, owns_agent: bool) -> None:
        from caption_agent.service.metrics import ServiceMetrics
        from caption_agent.service.security import KeyChecker

        self.agent, self.settings, self.owns_agent = agent, settings, owns_agent
        self.metrics = ServiceMetrics()
        self.keys = KeyChecker(settings.api_key_hashes)
        self.executor: ThreadPoolExecutor | None = None
        self.batcher: Any = None
        self.loaded = False
        self.load_error: str | None = None
        self.waiting_localize = 0
        self._ready_cache: tuple[float, dict[str, str]] | None = None
        self.review_queue: Path | None = settings.queue_path(agent.config.policy.review_queue)
        # A queue named only in the service settings: the service appends what needs review (the pipeline appends
        # to its own config's queue).
        self.queues_holds = self.review_queue is not None and agent.config.policy.review_queue is None

    # --- model thread -------------------------------------------------------------------------------------------
    def load_models(self) -> None:
        """Load every stage once; with ``warmup`` also run the drafter on a generated image."""
        agent = self.agent
        _ = agent.drafter, agent.ranker, agent.policy, agent.retriever, agent.refiner
        if self.review_queue is not None:  # the desk's first item view then needs no language profiles loaded
            from caption_agent.policies.review_text import warm_up

            warm_up()
        if self.settings.warmup:
            import io

            import numpy as np
            from PIL import Image

            from caption_agent.images import load_image

            buf = io.BytesIO()
            Image.fromarray(np.random.default_rng(0).integers(0, 255, (96, 96, 3), dtype=np.uint8)).save(buf, "PNG")
            image, info = load_image(buf.getvalue(), agent.config.images)
            agent.drafter.draft([image], [info], 1)

    def run_batch(self, requests: list[Any]) -> list[Any]:
        from caption_agent.service.keep import keep_for_review, queue_holds

        results: list[Any] = self.agent.caption_batch(requests)
        if self.queues_holds:
            queue_holds(self, results)
        keep_for_review(self, requests, results)
        return results

    async def in_model_thread(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    # --- readiness ----------------------------------------------------------------------------------------------
    async def readiness(self) -> dict[str, str]:
        now = time.monotonic()
        if self._ready_cache is not None and now - self._ready_cache[0] < _READY_TTL_S:
            return self._ready_cache[1]
        checks = {"models": "ok" if self.loaded else (self.load_error or "loading")}
        if self.loaded:
            for name, probe in self._probes().items():
                try:
                    await asyncio.wait_for(asyncio.to_thread(probe), timeout=10.0)
                    checks[name] = "ok"
                except Exception as exc:  # noqa: BLE001 - reported, not raised
                    checks[name] = f"{type(exc).__name__}: {exc}"[:300]
        self._ready_cache = (now, checks)
        return checks

    def _probes(self) -> dict[str, Any]:
        agent = self.agent
        probes: dict[str, Any] = {}
        if agent.retriever is not None:
            probes["store"] = agent.retriever.store.count
        for name in ("drafter", "refiner"):
            stage = getattr(agent, name)
            if stage is not None and hasattr(stage, "check_ready"):
                probes[name] = stage.check_ready
        return probes
