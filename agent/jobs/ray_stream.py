"""The streaming Ray Data runner: Ray reads the input, workers key the rows, stages run as separate steps.

    read (Datasource: shards, row groups, manifests)
      -> keys   (CPU actors: parse rows, hash bytes where they are (fetching remote ones), drop done keys)
      -> draft  (actor pool; GPUs per actor and custom resources configurable)
      -> rank + ground (CPU actors)
      -> refine + moderate (light actors; the refiner bounds its own concurrent requests to vLLM)
      -> driver: writes records to the fsync'd output log

The driver holds the set of done keys (the log's index) and one block in flight, never the items. Exactly-once
rests on the driver's log, as for the local runner: a record is written only if its key is not in the log yet,
and a killed driver loses only records not yet fsync'd, which a re-run recomputes (workers skip the done keys).
Rows that ask for the same computation are computed once per row here (``duplicate_of`` is the local runner's).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import pickle
import time
from typing import TYPE_CHECKING, Any, Iterator

from caption_agent.jobs.ray_sources import RaySource, StepSpec, make_datasource, row_to_raw
from caption_agent.jobs.stages import error_record, import_target, ray_session

if TYPE_CHECKING:  # pragma: no cover
    from caption_agent.jobs.engine import JobOptions

log = logging.getLogger("caption_agent.jobs")


def _dumps(record: dict[str, Any]) -> str:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"), default=str)


class KeyStep:
    """Rows -> (key, payload) where the bytes are; done keys are dropped, unusable rows become error records."""

    def __init__(self, source: RaySource, done: list[Any] | None = None) -> None:
        from pathlib import Path

        self.source = source
        self.limits = source.image_limits()
        self.base = Path(".")
        self.done: frozenset[str] = frozenset()
        if done:
            import ray

            self.done = ray.get(done[0])

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[Any]]:
        from caption_agent.jobs.manifest import _to_item

        src = self.source
        keys, payloads, records, skips = [], [], [], []
        for text, blob in zip(batch["raw"], batch["blob"]):
            raw = row_to_raw(str(text), bytes(blob))
            item = _to_item(raw, self.base, raw.label, src.style, src.locale, self.limits, src.sources)
            keys.append(item.key)
            skips.append(item.key in self.done)
            if item.key in self.done:
                payloads.append(b"")
                records.append("")
            elif item.error:
                payloads.append(b"")
                err = item.error
                records.append(_dumps(error_record(item, err["type"], err["message"], err["stage"])))
            else:
                payloads.append(pickle.dumps((item, None), protocol=5))
                records.append("")
        return {"key": keys, "payload": payloads, "record": records, "skip": skips, "seconds": [0.0] * len(keys)}


class RayStep:
    """One pipeline step as a ``map_batches`` actor: rows carrying a payload go through it, records pass by.

    The wrapped step maps ``[(item, state)]`` to new states, or to records when it is the last step. If the step
    raises, each item of the batch gets an error record (retryable with --retry-errors) and the job goes on.
    """

    def __init__(self, target: str, kwargs: dict[str, Any], final: bool) -> None:
        self.step = import_target(target)(**kwargs)
        self.final = final

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        payloads = list(batch["payload"])
        records = [str(r) for r in batch["record"]]
        seconds = [float(s) for s in batch["seconds"]]
        todo = [i for i, p in enumerate(payloads) if len(p)]
        if todo:
            pairs = [pickle.loads(bytes(payloads[i])) for i in todo]
            t0 = time.perf_counter()
            try:
                out = self.step(pairs)
                if len(out) != len(pairs):
                    raise RuntimeError(f"step returned {len(out)} results for {len(pairs)} items")
            except Exception as exc:  # noqa: BLE001 - recorded per item; the job goes on with the next batch
                log.exception("ray step failed", extra={"items": len(pairs)})
                out = [error_record(item, type(exc).__name__, str(exc), "job") for item, _ in pairs]
                for i, record in zip(todo, out):
                    payloads[i], records[i] = b"", _dumps(record)
                out = []
            share = (time.perf_counter() - t0) / len(todo)
            for (i, result), (item, _) in zip(zip(todo, out), pairs):
                seconds[i] += share
                if self.final or isinstance(result, dict):
                    payloads[i], records[i] = b"", _dumps(result)
                else:
                    payloads[i] = pickle.dumps((item, result), protocol=5)
        return {
            "key": list(batch["key"]),
            "payload": payloads,
            "record": records,
            "skip": list(batch["skip"]),
            "seconds": seconds,
        }


def _remote_args(role: str, options: JobOptions) -> dict[str, Any]:
    if role == "draft":
        args: dict[str, Any] = {
            "num_cpus": options.ray_draft_cpus,
            "num_gpus": options.ray_gpus or None,
            "concurrency": options.ray_concurrency,
        }
        if options.ray_resources:
            args["resources"] = dict(options.ray_resources)
        return args
    if role == "io":
        return {"num_cpus": 0.25, "concurrency": options.ray_io_actors}
    return {"num_cpus": options.ray_cpu_per_actor, "concurrency": options.ray_cpu_actors}


def run_ray_stream(
    source: RaySource, options: JobOptions, done: frozenset[str]
) -> Iterator[tuple[list[str], list[dict[str, Any] | None], float]]:
    """Yield (keys, records, seconds) per finished block; a None record marks a key the log already holds."""
    source = dataclasses.replace(source, block_rows=max(1, options.batch_size))  # one batch per block
    with ray_session(options.ray_address) as ray:
        ds = ray.data.read_datasource(make_datasource(source), num_cpus=0.25)
        done_ref = [ray.put(done)] if done else None
        ds = ds.map_batches(
            KeyStep,
            fn_constructor_kwargs={"source": source, "done": done_ref},
            batch_size=options.batch_size,
            batch_format="numpy",
            num_cpus=0.25,
            compute=ray.data.ActorPoolStrategy(size=options.ray_key_actors),
        )
        for n, step in enumerate(source.steps):
            final = n == len(source.steps) - 1
            args = _remote_args(step.role, options)
            pool = ray.data.ActorPoolStrategy(size=args.pop("concurrency"))
            ds = ds.map_batches(
                RayStep,
                fn_constructor_kwargs={"target": step.target, "kwargs": step.kwargs, "final": final},
                batch_size=options.batch_size,
                batch_format="numpy",
                compute=pool,
                **args,
            )
        steps = [s.target for s in source.steps]
        log.info("ray stream submitted", extra={"inputs": len(source.inputs), "steps": steps})
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=1):
            keys = [str(k) for k in batch["key"]]
            records = [None if s else json.loads(str(r)) for s, r in zip(batch["skip"], batch["record"])]
            yield keys, records, float(sum(batch["seconds"]))


def caption_steps(config: dict[str, Any], recaption: dict[str, Any]) -> tuple[StepSpec, ...]:
    """The caption pipeline as streaming steps: draft, rank + ground, refine + moderate."""
    kwargs = {"config": config, "recaption": recaption}
    return tuple(StepSpec(target, kwargs, role) for target, role in CAPTION_STEPS)


# (target, role): the steps are named, not imported (pipeline_steps imports the caption job, which imports this
# module); role picks the step's resources in _remote_args.
CAPTION_STEPS = (
    ("caption_agent.jobs.pipeline_steps:DraftStep", "draft"),
    ("caption_agent.jobs.pipeline_steps:RankStep", "cpu"),
    ("caption_agent.jobs.pipeline_steps:RefineStep", "io"),
)
