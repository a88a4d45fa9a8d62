"""The local runner of the job driver: batches run in this process, ``workers`` at a time, and the input is read
ahead on a thread (``Prefetcher``)."""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any, Iterable, Iterator

from caption_agent.jobs.stages import Stage, safe_call


def run_local(
    batches: Iterable[list[Any]], stage: Stage, workers: int
) -> Iterator[tuple[list[Any], list[dict[str, Any]], float]]:
    """Run batches in this process, ``workers`` at a time (so refinement of one overlaps drafting of the next)."""

    def timed(batch: list[Any]) -> tuple[list[Any], list[dict[str, Any]], float]:
        t0 = time.perf_counter()
        records = safe_call(stage, batch)
        return batch, records, time.perf_counter() - t0

    if workers <= 1:
        for batch in batches:
            yield timed(batch)
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="job-batch") as pool:
        running: set[Future[Any]] = set()
        for batch in batches:
            running.add(pool.submit(timed, batch))
            if len(running) >= workers:
                done, running = wait(running, return_when=FIRST_COMPLETED)
                for fut in done:
                    yield fut.result()
        for fut in running:
            yield fut.result()


_END = object()


class Prefetcher:
    """Pulls an iterator (manifest reading and image hashing) on a thread, ``depth`` items ahead.

    Only reading happens on the thread; filtering and writing stay on the job's single driver thread.
    """

    def __init__(self, source: Iterable[Any], depth: int) -> None:
        self._q: queue.Queue[Any] = queue.Queue(maxsize=max(1, depth))
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._fill, args=(source,), name="job-prefetch", daemon=True)
        self._thread.start()

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _fill(self, source: Iterable[Any]) -> None:
        try:
            for item in source:
                if not self._put(item):
                    return
        except BaseException as exc:  # noqa: BLE001 - re-raised in the consumer
            self._error = exc
        self._put(_END)

    def __iter__(self) -> Prefetcher:
        return self

    def __next__(self) -> Any:
        item = self._q.get()
        if item is _END:
            self._stop.set()
            if self._error is not None:
                raise self._error
            raise StopIteration
        return item

    def close(self) -> None:
        self._stop.set()
