"""Micro-batching: concurrent caption requests wait a few milliseconds so they reach the drafter as one batch.

A bounded asyncio queue holds waiting requests (full -> QueueFullError, answered 429 + Retry-After); one worker
takes the first request, collects others for up to ``window_s`` or ``max_batch`` items, and runs
``agent.caption_batch`` in the service's single model thread. Each caller waits on its own future with a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from caption_agent.service.errors import QueueFullError, RequestTimeoutError


@dataclass
class _Pending:
    request: Any
    future: asyncio.Future[Any]
    enqueued: float = field(default_factory=time.perf_counter)


class MicroBatcher:
    """Collects requests into batches for ``run_batch`` (a blocking function run in ``executor``)."""

    def __init__(
        self,
        run_batch: Callable[[list[Any]], Sequence[Any]],
        executor: Executor,
        *,
        queue_size: int,
        max_batch: int,
        window_s: float,
        metrics: Any = None,
    ) -> None:
        self.run_batch, self.executor = run_batch, executor
        self.max_batch, self.window_s = max_batch, window_s
        self.metrics = metrics
        self.queue: asyncio.Queue[_Pending] = asyncio.Queue(maxsize=queue_size)
        self.batches = 0
        self._item_s = 0.5  # running estimate of seconds per item, for Retry-After
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._work(), name="caption-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        while not self.queue.empty():
            pending = self.queue.get_nowait()
            if not pending.future.done():
                pending.future.set_exception(RequestTimeoutError("the service is shutting down."))

    @property
    def depth(self) -> int:
        return self.queue.qsize()

    def retry_after_s(self) -> int:
        """Seconds until the queue has likely drained by one batch; at least 1."""
        return max(1, math.ceil(min(self.depth, self.max_batch) * self._item_s))

    async def submit(self, request: Any, timeout_s: float) -> Any:
        """Queue one request and wait for its result (RequestTimeoutError past ``timeout_s``)."""
        future = asyncio.get_running_loop().create_future()
        try:
            self.queue.put_nowait(_Pending(request, future))
        except asyncio.QueueFull:
            raise QueueFullError(
                f"the caption queue is full ({self.queue.maxsize} requests waiting).",
                retry_after_s=self.retry_after_s(),
            ) from None
        self._gauge()
        try:
            return await asyncio.wait_for(asyncio.shield(future), max(timeout_s, 0.0))
        except TimeoutError:
            raise RequestTimeoutError("no result within the request timeout.") from None
        finally:  # timed out or the caller was cancelled: the worker skips it if it has not started
            future.cancel()

    async def _collect(self) -> list[_Pending]:
        first = await self.queue.get()
        batch = [first]
        deadline = time.perf_counter() + self.window_s
        while len(batch) < self.max_batch:
            left = deadline - time.perf_counter()
            try:
                batch.append(self.queue.get_nowait() if left <= 0 else await asyncio.wait_for(self.queue.get(), left))
            except (TimeoutError, asyncio.QueueEmpty):
                break
        return [p for p in batch if not p.future.done()]

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect()
            self._gauge()
            if not batch:
                continue
            if self.metrics is not None:
                self.metrics.batch_size.observe(len(batch))
                self.metrics.in_flight.set(len(batch))
            t0 = time.perf_counter()
            try:
                results = await loop.run_in_executor(self.executor, self.run_batch, [p.request for p in batch])
            except Exception as exc:  # noqa: BLE001 - every waiting caller gets the failure, the worker lives on
                results = [exc] * len(batch)
            elapsed = time.perf_counter() - t0
            self.batches += 1
            self._item_s = 0.7 * self._item_s + 0.3 * elapsed / len(batch)
            if self.metrics is not None:
                self.metrics.batch_seconds.observe(elapsed)
                self.metrics.in_flight.set(0)
            for pending, result in zip(batch, results):
                if pending.future.done():
                    continue
                if isinstance(result, BaseException):
                    pending.future.set_exception(result)
                else:
                    pending.future.set_result(result)

    def _gauge(self) -> None:
        if self.metrics is not None:
            self.metrics.queue_depth.set(self.depth)
