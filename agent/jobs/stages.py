"""What a batch stage is, and how any runner (local threads in the job process, or Ray actors) calls one.

The job driver (``jobs.engine``) and the Ray runner (``jobs.ray_runner``) both build on it; the driver imports the
Ray runner only when a job asks for it, and the runner never imports the driver.
"""

from __future__ import annotations

import importlib
import logging
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator, Protocol, Sequence

from caption_agent._extras import require

log = logging.getLogger("caption_agent.jobs")


class Stage(Protocol):
    """A batch stage: one record per item, in order, never raising for one item's fault."""

    def __call__(self, items: Sequence[Any]) -> list[dict[str, Any]]: ...


@dataclass(frozen=True)
class StageSpec:
    """How a remote worker builds a stage: import paths plus JSON-able arguments (nothing to pickle)."""

    stage: str  # "module:Class", called as Class(**kwargs)
    item: str  # "module:Class" with from_json
    kwargs: dict[str, Any] = field(default_factory=dict)


def import_target(target: str) -> Any:
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def error_record(item: Any, etype: str, message: str, stage: str) -> dict[str, Any]:
    return item.annotate(
        {"key": item.key, "status": "error", "error": {"type": etype, "message": message, "stage": stage}}
    )


def safe_call(stage: Stage, batch: Sequence[Any]) -> list[dict[str, Any]]:
    """Run a stage; if the stage itself crashes, each item of the batch gets an error record (retryable)."""
    try:
        records = stage(batch)
        if len(records) != len(batch):
            raise RuntimeError(f"stage returned {len(records)} records for {len(batch)} items")
        return records
    except Exception as exc:  # noqa: BLE001 - recorded per item; the job goes on with the next batch
        log.exception("batch failed", extra={"items": len(batch)})
        return [error_record(i, type(exc).__name__, str(exc), "job") for i in batch]


@contextmanager
def ray_session(address: str | None) -> Iterator[Any]:
    """The ``ray`` module, connected: to ``address``'s cluster, or a local instance started here when unset (and
    shut down on exit; a connection the caller already made is left alone). Ray Data's progress bars are off."""
    ray = require("ray", "ray", "The Ray runner (--runner ray)")
    require("ray.data", "ray", "The Ray runner (--runner ray)")
    started_here = False
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
        started_here = True
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        ctx.op_resource_reservation_enabled = False
        yield ray
    finally:
        if started_here:
            ray.shutdown()
