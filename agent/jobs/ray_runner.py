"""Ray Data runner: the same batch stage as the local runner, as ``map_batches`` over a Ray cluster.

The driver (the job process) reads the manifest, skips done keys and owns the output log; Ray actors build the
stage once each (models load once per actor) and return records, which stream back to the driver and are
written with the same fsync'd log. A killed driver loses only records not yet written: a re-run recomputes them.
Workers must be able to import caption-agent and read the image paths (install it on every node, share storage).
"""

from __future__ import annotations

import json
import logging
import math
import time
from typing import TYPE_CHECKING, Any, Iterator, Sequence

from caption_agent.jobs.stages import StageSpec, import_target, ray_session, safe_call

if TYPE_CHECKING:  # pragma: no cover
    from caption_agent.jobs.engine import JobOptions

log = logging.getLogger("caption_agent.jobs")
_MAX_BLOCKS = 20_000


class RayBatchStage:
    """The ``map_batches`` callable: builds the stage once per actor, maps item JSON to record JSON."""

    def __init__(self, stage: str, item: str, kwargs: dict[str, Any]) -> None:
        self.item_cls = import_target(item)
        self.stage = import_target(stage)(**kwargs)

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[Any]]:
        items = [self.item_cls.from_json(str(text)) for text in batch["item"]]
        t0 = time.perf_counter()
        records = safe_call(self.stage, items)
        seconds = time.perf_counter() - t0
        return {
            "key": [i.key for i in items],
            "record": [json.dumps(r, ensure_ascii=False, separators=(",", ":")) for r in records],
            "seconds": [seconds / max(1, len(items))] * len(items),
        }


def run_ray(
    items: Sequence[Any], spec: StageSpec, options: JobOptions
) -> Iterator[tuple[list[str], list[dict[str, Any]], float]]:
    """Yield (keys, records, seconds) per finished block, in completion order."""
    if not items:
        return
    with ray_session(options.ray_address) as ray:
        blocks = min(_MAX_BLOCKS, max(1, math.ceil(len(items) / options.batch_size)))
        ds = ray.data.from_items([{"item": i.to_json()} for i in items], override_num_blocks=blocks)
        ds = ds.map_batches(
            RayBatchStage,
            fn_constructor_kwargs={"stage": spec.stage, "item": spec.item, "kwargs": spec.kwargs},
            batch_size=options.batch_size,
            concurrency=options.ray_concurrency,
            batch_format="numpy",
            num_cpus=1,
        )
        log.info("ray job submitted", extra={"items": len(items), "blocks": blocks, "actors": options.ray_concurrency})
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=0):
            keys = [str(k) for k in batch["key"]]
            records = [json.loads(str(r)) for r in batch["record"]]
            yield keys, records, float(sum(batch["seconds"]))
