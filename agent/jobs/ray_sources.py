"""Ray Data reads a job's input: a Datasource whose read tasks stream manifest rows and WebDataset samples.

The driver never lists items: read tasks run on the cluster (one per shard, one per Parquet row group, one per
other manifest) and emit rows as they are read, in blocks of ``_BLOCK_ROWS``. Keys are computed in workers, where
the bytes are: by default in the read task itself (``make_datasource``'s ``key``, a ``ray_stream.KeyStep``, passed
in so that this module does not import the runner), which spares each block an actor call and an object transfer;
with several key actors, downstream in their own pool. Rows are numbered as the local runner numbers them, so both
runners give every row the same key.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from caption_agent.config import ImageLimits
from caption_agent.jobs.manifest import _Raw, read_inputs, read_shards
from caption_agent.jobs.sources import SourceOptions, iter_inputs
from caption_agent.jobs.webdataset import is_shard

_BLOCK_ROWS = 256


@dataclass(frozen=True)
class StepSpec:
    """One ``map_batches`` step of the streaming runner: ``module:Class`` built as Class(**kwargs) per actor.

    ``role`` picks its resources: ``draft`` (GPUs per actor, custom resources, --ray-concurrency actors), ``cpu``
    (ranking, grounding: --ray-cpu-actors), ``io`` (refinement against a server: light CPU, bounded concurrency).
    """

    target: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    role: str = "cpu"


@dataclass(frozen=True)
class RaySource:
    """What the streaming Ray runner reads and how it keys rows (plain data: pickled to read tasks)."""

    inputs: list[str]
    style: str
    locale: str
    limits: dict[str, Any]
    sources: SourceOptions = field(default_factory=SourceOptions)
    limit: int | None = None
    steps: tuple[StepSpec, ...] = ()
    # Rows per block a read task yields (and per keying call and ledger claim); the runner sets it to the job's batch
    # size. Ray Data (2.60) gathers a task's blocks up to its target block size (128 MiB) before passing them on,
    # then splits them (SplitBlocks) so that the steps' actors share them out: the steps' blocks are not these.
    block_rows: int = _BLOCK_ROWS

    def image_limits(self) -> ImageLimits:
        return ImageLimits(**self.limits)


def raw_to_row(raw: _Raw) -> tuple[str, bytes]:
    data = dict(raw.data) if raw.data is not None else None
    blob = raw.blob
    if data is not None and isinstance(data.get("image"), (bytes, bytearray)):  # inline bytes travel as a column
        blob = bytes(data["image"])
        data["image"] = f"{raw.label}#row{raw.row}"
    fields = {**asdict(raw), "data": data, "blob": None}
    return json.dumps(fields, ensure_ascii=False, default=str), blob or b""


def row_to_raw(text: str, blob: bytes) -> _Raw:
    fields = json.loads(text)
    fields["blob"] = bytes(blob) if blob else None
    return _Raw(**fields)


# Keys rows in a read task: (row texts, their bytes) -> the columns of the keyed block (``ray_stream.KeyStep``).
KeyRows = Callable[[list[str], list[bytes]], dict[str, list[Any]]]


def _blocks(raws: Iterator[_Raw], block_rows: int = _BLOCK_ROWS, key: KeyRows | None = None) -> Iterator[Any]:
    texts: list[str] = []
    blobs: list[bytes] = []
    for raw in raws:
        text, blob = raw_to_row(raw)
        texts.append(text)
        blobs.append(blob)
        if len(texts) >= block_rows:
            yield _block(texts, blobs, key)
            texts, blobs = [], []
    if texts:
        yield _block(texts, blobs, key)


def _block(texts: list[str], blobs: list[bytes], key: KeyRows | None) -> Any:
    import pyarrow as pa

    if key is None:  # raw rows, keyed by the key actors downstream
        return pa.table({"raw": pa.array(texts, pa.large_string()), "blob": pa.array(blobs, pa.large_binary())})
    columns = key(texts, blobs)
    return pa.table({name: pa.array(columns[name], kind) for name, kind in _keyed_schema(pa)})


def _keyed_schema(pa: Any) -> list[tuple[str, Any]]:
    """The columns of a keyed block (large types: a block of big images may pass 2 GiB)."""
    text, blob = pa.large_string(), pa.large_binary()
    return [
        ("key", text),
        ("payload", blob),
        ("record", text),
        ("skip", pa.bool_()),
        ("seconds", pa.float64()),
        ("cache", text),
        ("follower", blob),
    ]


def _parquet_slice(path: str, group: int, first_row: int, label: str) -> Iterator[_Raw]:
    import pyarrow.parquet as pq

    row = first_row
    base = str(Path(path).parent)
    for batch in pq.ParquetFile(path).iter_batches(batch_size=4096, row_groups=[group]):
        for data in batch.to_pylist():
            clean = {k: v for k, v in data.items() if v is not None and v != ""}
            text = json.dumps(clean, sort_keys=True, default=str, ensure_ascii=False)
            yield _Raw(row, clean, text, label=label, base=base)
            row += 1


def make_datasource(source: RaySource, key: KeyRows | None = None) -> Any:
    """A Ray Data Datasource over ``source``'s inputs (imported lazily: Ray is an optional extra): blocks of raw
    rows (``raw``, ``blob``), or, with ``key``, of keyed rows (the columns of ``ray_stream.KeyStep``)."""
    from ray.data import Datasource, ReadTask
    from ray.data.block import BlockMetadata

    class _RowsDatasource(Datasource):  # type: ignore[misc,unused-ignore]
        def __init__(self, source: RaySource) -> None:
            self.source = source

        def estimate_inmemory_data_size(self) -> int | None:
            return None

        def get_name(self) -> str:
            return "CaptionRows"

        def get_read_tasks(
            self, parallelism: int, per_task_row_limit: int | None = None, data_context: Any = None
        ) -> list[Any]:
            src = self.source
            limits = src.image_limits()
            names = list(iter_inputs(src.inputs))

            def task(fn: Any, files: tuple[str, ...]) -> Any:
                meta = BlockMetadata(num_rows=None, size_bytes=None, exec_stats=None, input_files=files)
                return ReadTask(lambda: _blocks(fn(), src.block_rows, key), meta)

            if src.limit is not None:  # the first N rows in input order: one reader
                return [task(lambda: _take(read_inputs(src.inputs, src.sources, limits), src.limit), tuple(names))]
            if names and all(is_shard(n) for n in names):
                return [task(lambda s=s: read_shards([s], src.sources, limits), (s,)) for s in names]
            if len(names) == 1 and names[0].lower().endswith(".parquet") and Path(names[0]).is_file():
                import pyarrow.parquet as pq

                meta = pq.ParquetFile(names[0]).metadata
                tasks, first = [], 0
                for g in range(meta.num_row_groups):
                    fn = lambda g=g, first=first: _parquet_slice(names[0], g, first, Path(names[0]).name)  # noqa: E731
                    tasks.append(task(fn, (names[0],)))
                    first += meta.row_group(g).num_rows
                return tasks
            return [task(lambda: read_inputs(src.inputs, src.sources, limits), tuple(names))]

    return _RowsDatasource(source)


def _take(raws: Iterator[_Raw], n: int | None) -> Iterator[_Raw]:
    for i, raw in enumerate(raws):
        if n is not None and i >= n:
            return
        yield raw
