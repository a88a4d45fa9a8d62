"""The streaming Ray Data runner: Ray reads the input, workers key the rows, stages run as separate steps.

    read + keys (Datasource: shards, row groups, manifests; each read task parses its rows, hashes the bytes where
                 they are (fetching remote ones), drops done keys; with --ray-key-actors N > 1, keying is a pool
                 of N actors of its own, for one manifest whose rows are slow to key)
      -> draft  (actor pool; GPUs per actor and custom resources configurable)
      -> rank + ground (CPU actors)
      -> refine + moderate (light actors; the refiner bounds its own concurrent requests to vLLM)
      -> driver: writes records to the fsync'd output log

The driver holds the set of done keys (the log's index) and one block in flight, never the items. Exactly-once
rests on the driver's log, as for the local runner: a record is written only if its key is not in the log yet,
and a killed driver loses only records not yet fsync'd, which a re-run recomputes (workers skip the done keys).

Rows that ask for the same computation (same ``cache_key``) are computed once per run, as with the local runner.
A ``ClaimLedger`` actor of the driver's Ray session holds the cache keys claimed so far, as 16-byte digests (plus
8 bytes naming the claiming row, so that a retried key task claims its own rows again): the first row to claim a
cache key is computed, later rows go past the steps as *followers*, markers without a payload that carry the row
(without its bytes). The driver (``ray_driver``) writes each follower a copy of the original's record (its own
key, ``cached: true``, ``duplicate_of``), after the original's. Done keys are dropped before claiming, so on a
re-run a row whose original is already in the log claims the computation again and is computed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import pickle
import time
from typing import TYPE_CHECKING, Any, Iterator, NamedTuple

from caption_agent.jobs.ray_sources import RaySource, make_datasource, row_to_raw
from caption_agent.jobs.stages import error_record, import_target, ray_session

if TYPE_CHECKING:  # pragma: no cover
    from caption_agent.jobs.engine import JobOptions

log = logging.getLogger("caption_agent.jobs")


def _dumps(record: dict[str, Any]) -> str:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"), default=str)


class KeyStep:
    """Rows -> (key, payload) where the bytes are; done keys are dropped, unusable rows become error records.

    With a ``ledger``, each batch claims its rows' cache keys in one call: a row whose computation another row
    claimed first becomes a follower (no payload, the row pickled in ``follower``). Runs in the read tasks
    (``key_rows``, the datasource's ``key``) or as a ``map_batches`` actor (``__call__``); the done keys are
    fetched on first use, once per worker process (a read task's pickled step carries only their reference).
    """

    def __init__(self, source: RaySource, done: list[Any] | None = None, ledger: Any = None) -> None:
        self.source = source
        self.ledger = ledger
        self._done_ref = done

    def _done(self) -> frozenset[str]:
        if not self._done_ref:
            return frozenset()
        import ray

        ref = self._done_ref[0]
        if _DONE_CACHE.get("ref") != ref.hex():
            _DONE_CACHE.clear()
            _DONE_CACHE.update(ref=ref.hex(), keys=ray.get(ref))
        keys: frozenset[str] = _DONE_CACHE["keys"]
        return keys

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[Any]]:
        return self.key_rows([str(t) for t in batch["raw"]], [bytes(b) for b in batch["blob"]])

    def key_rows(self, texts: list[str], blobs: list[bytes]) -> dict[str, list[Any]]:
        from pathlib import Path

        from caption_agent.jobs.manifest import _to_item

        src = self.source
        limits, base, done = src.image_limits(), Path("."), self._done()
        keys, payloads, records, skips, caches, followers = [], [], [], [], [], []
        todo: list[tuple[int, Any]] = []
        for text, blob in zip(texts, blobs):
            raw = row_to_raw(text, blob)
            item = _to_item(raw, base, raw.label, src.style, src.locale, limits, src.sources)
            keys.append(item.key)
            skips.append(item.key in done)
            payloads.append(b"")
            records.append("")
            caches.append("")
            followers.append(b"")
            if item.key in done:
                continue
            if item.error:
                err = item.error
                records[-1] = _dumps(error_record(item, err["type"], err["message"], err["stage"]))
            else:
                todo.append((len(keys) - 1, item))
        firsts = [True] * len(todo)
        if self.ledger is not None and todo:
            import ray

            claims = [(_digest(item.cache_key, 16), _digest(item.key, 8)) for _, item in todo]
            firsts = ray.get(self.ledger.claim.remote(claims))
        for (i, item), first in zip(todo, firsts):
            caches[i] = item.cache_key
            if first:
                payloads[i] = pickle.dumps((item, None), protocol=5)
            else:  # the original's record is copied by the driver: only the row travels, not its bytes
                followers[i] = pickle.dumps(dataclasses.replace(item, blob=None), protocol=5)
        return {
            "key": keys,
            "payload": payloads,
            "record": records,
            "skip": skips,
            "seconds": [0.0] * len(keys),
            "cache": caches,
            "follower": followers,
        }


_DONE_CACHE: dict[str, Any] = {}  # this worker process's done keys: {"ref": object id, "keys": frozenset}


def _digest(text: str, size: int) -> bytes:
    return hashlib.blake2b(text.encode(), digest_size=size).digest()


class ClaimLedger:
    """The cache keys claimed in this run (one actor per job, calls served one at a time, so claims are atomic).

    Entries are (16-byte cache key digest, 8-byte claimer digest): a sorted array, plus a dict of recent claims
    merged into it in bulk, so memory stays near 24 bytes per distinct computation for millions of rows. A claim
    is first when no other row claimed that cache key before; a row claiming again (a retried task) stays first.
    """

    def __init__(self) -> None:
        import numpy as np

        self._np = np
        self._keys = np.empty(0, dtype="S16")
        self._owners = np.empty(0, dtype="S8")
        self._recent: dict[bytes, bytes] = {}

    def claim(self, claims: list[tuple[bytes, bytes]]) -> list[bool]:
        np = self._np
        firsts = []
        if len(self._keys):
            wanted = np.array([c for c, _ in claims], dtype="S16")
            pos = np.minimum(np.searchsorted(self._keys, wanted), len(self._keys) - 1)
            found = self._keys[pos] == wanted
            owners = self._owners[pos]
        else:
            found = [False] * len(claims)
            owners = [b""] * len(claims)
        for (cache, row), old, owner in zip(claims, found, owners):
            if old:
                firsts.append(bytes(owner) == row.rstrip(b"\0"))  # numpy's S dtype drops trailing NULs
            else:
                firsts.append(self._recent.setdefault(cache, row) == row)
        if len(self._recent) >= max(65536, len(self._keys) >> 5):
            self._merge()
        return firsts

    def _merge(self) -> None:
        np = self._np
        new = sorted(self._recent.items())
        keys = np.array([k for k, _ in new], dtype="S16")
        at = np.searchsorted(self._keys, keys)  # two sorted arrays: one insert, no re-sort
        self._keys = np.insert(self._keys, at, keys)
        self._owners = np.insert(self._owners, at, np.array([o for _, o in new], dtype="S8"))
        self._recent = {}


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
        passed = {name: list(column) for name, column in batch.items()}  # keys, skips, followers...
        return {**passed, "payload": payloads, "record": records, "seconds": seconds}


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


class StreamRow(NamedTuple):
    """One row as the driver gets it: ``record`` is None for a done key and for a follower; a follower carries its
    item (without bytes) for the copy, and every row that claimed a computation its ``cache_key``."""

    key: str
    record: dict[str, Any] | None
    cache_key: str
    follower: Any


def run_ray_stream(
    source: RaySource, options: JobOptions, done: frozenset[str]
) -> Iterator[tuple[list[StreamRow], float]]:
    """Yield (rows, seconds) per finished block."""
    source = dataclasses.replace(source, block_rows=max(1, options.batch_size))  # one batch per block
    with ray_session(options.ray_address) as ray:
        done_ref = [ray.put(done)] if done else None
        # Owned by this driver: it goes when the driver goes, so a re-run starts with no claims.
        ledger = ray.remote(num_cpus=0)(ClaimLedger).remote()
        try:
            yield from _stream(ray, source, options, done_ref, ledger)
        finally:
            ray.kill(ledger)


def _read(ray: Any, source: RaySource, key: Any) -> Any:
    """The read as a dataset (Ray Data gathers the read tasks' blocks up to its target block size, then splits
    them so that the steps get enough blocks to share out)."""
    return ray.data.read_datasource(make_datasource(source, key), num_cpus=0.25)


def _stream(
    ray: Any, source: RaySource, options: JobOptions, done_ref: Any, ledger: Any
) -> Iterator[tuple[list[StreamRow], float]]:
    """Read and key the rows, run the pipeline's steps, and yield the finished blocks as StreamRows."""
    if options.ray_key_actors > 1:  # keying in a pool of its own: one manifest's rows keyed N at a time
        ds = _read(ray, source, None).map_batches(
            KeyStep,
            fn_constructor_kwargs={"source": source, "done": done_ref, "ledger": ledger},
            batch_size=options.batch_size,
            batch_format="numpy",
            num_cpus=0.25,
            compute=ray.data.ActorPoolStrategy(size=options.ray_key_actors),
        )
    else:  # keyed in the read tasks: no actor call and no object transfer per block for it
        ds = _read(ray, source, KeyStep(source, done_ref, ledger).key_rows)
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
        rows = [
            StreamRow(
                str(key),
                None if skip or len(follower) else json.loads(str(record)),
                str(cache_key),
                pickle.loads(bytes(follower)) if len(follower) else None,
            )
            for key, record, skip, cache_key, follower in zip(
                batch["key"], batch["record"], batch["skip"], batch["cache"], batch["follower"]
            )
        ]
        yield rows, float(sum(batch["seconds"]))
