"""Batch input rows: a folder of images, JSONL/CSV/Parquet manifests or WebDataset shards, read lazily.

Each reader yields raw rows (``_Raw``): the row's data as read, its number and origin, and, for a row that cannot
be read, the problem, so that ``manifest`` answers it with an error record and reading goes on. An input that is
missing or of an unknown type raises ``ManifestError``.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

from caption_agent._iter import MAX_LINE_BYTES, bounded_lines
from caption_agent.config import ImageLimits
from caption_agent.errors import CaptionAgentError
from caption_agent.jobs.sources import SourceOptions, iter_inputs
from caption_agent.jobs.webdataset import is_shard, iter_samples, sample_row

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"}


class ManifestError(CaptionAgentError):
    fix = (
        "pass a folder of images, or a .jsonl/.csv/.parquet file whose rows have an `image` column "
        "(optional: id, sku, brand, category, style, locale, n_candidates, max_chars)."
    )


@dataclass
class _Raw:
    row: int
    data: dict[str, Any] | None
    text: str  # the row as read, for the key of a row that cannot be parsed
    problem: str = ""
    origin: str = ""  # where the row comes from: "path:<relative path>" in a folder, "row:<n>" in a file
    blob: bytes | None = None  # image bytes that came with the row (a shard's sample)
    label: str = ""  # the input it belongs to, for error messages (the manifest's name, or a shard)
    base: str = ""  # the folder its relative image paths start from (several manifests: each its own)
    line: int = 0  # 1-based line of the row in a JSONL/CSV file, for messages (0: not a text file)

    def __post_init__(self) -> None:
        self.origin = self.origin or f"row:{self.row}"


def read_rows(path: Path) -> Iterator[_Raw]:
    """Rows of a manifest, lazily. A folder lists its image files, sorted, hidden files skipped."""
    path = Path(path)
    if path.is_dir():
        files = (
            p
            for p in sorted(path.rglob("*"))
            if p.is_file()
            and p.suffix.lower() in IMAGE_SUFFIXES
            and not any(part.startswith(".") for part in p.relative_to(path).parts)
        )
        for i, file in enumerate(files):
            rel = file.relative_to(path).as_posix()
            yield _Raw(i, {"image": os.path.abspath(file)}, rel, origin=f"path:{rel}")
        return
    if not path.is_file():
        raise ManifestError(f"manifest {str(path)!r} does not exist.")
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        yield from _jsonl_rows(path)
    elif suffix == ".csv":
        yield from _csv_rows(path)
    elif suffix == ".parquet":
        yield from _parquet_rows(path)
    else:
        raise ManifestError(f"manifest {str(path)!r} has an unknown type {suffix!r}.")


def _jsonl_rows(path: Path) -> Iterator[_Raw]:
    with open(path, "rb") as fh:
        row = -1
        for line_no, (raw, length) in enumerate(bounded_lines(fh, MAX_LINE_BYTES), 1):
            line = raw.decode("utf-8", errors="replace")
            if not line.strip():
                continue
            row += 1
            if length > MAX_LINE_BYTES:
                yield _Raw(
                    row,
                    None,
                    line[:1000] + f"...({length} bytes)",
                    f"line is {length} bytes long; at most {MAX_LINE_BYTES} are read",
                    line=line_no,
                )
                continue
            try:
                data = json.loads(line)
            except json.JSONDecodeError as exc:
                yield _Raw(row, None, line, f"not valid JSON ({exc.msg} at column {exc.colno})", line=line_no)
                continue
            except (ValueError, RecursionError) as exc:  # nested too deep for the parser, or similar
                yield _Raw(row, None, line, f"cannot be parsed as JSON ({type(exc).__name__})", line=line_no)
                continue
            if isinstance(data, str):  # a bare path per line is accepted too
                data = {"image": data}
            if not isinstance(data, dict):
                yield _Raw(row, None, line, f"expected a JSON object, got {type(data).__name__}", line=line_no)
                continue
            yield _Raw(row, data, line, line=line_no)


def _csv_rows(path: Path) -> Iterator[_Raw]:
    with open(path, encoding="utf-8-sig", errors="replace", newline="") as fh:
        reader = csv.DictReader(fh)
        row = -1
        while True:
            row += 1
            try:
                data = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:  # e.g. a cell over the csv module's size limit: that row only
                yield _Raw(
                    row, None, f"line {reader.line_num}: {exc}", f"cannot be read as CSV ({exc})", line=reader.line_num
                )
                continue
            extra = data.pop(None, None)  # more cells than header columns
            text = json.dumps(data, sort_keys=True, ensure_ascii=False)
            if extra:
                yield _Raw(row, None, text, f"has {len(extra)} more cell(s) than the header", line=reader.line_num)
                continue
            clean = {k.strip(): v for k, v in data.items() if k and v not in (None, "")}
            yield _Raw(row, clean, text, line=reader.line_num)


def _parquet_rows(path: Path) -> Iterator[_Raw]:
    from caption_agent._extras import require

    pq = require("pyarrow.parquet", "parquet", "Reading a Parquet manifest", package="pyarrow")
    row = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=4096):
        for data in batch.to_pylist():
            clean = {k: v for k, v in data.items() if v is not None and v != ""}
            yield _Raw(row, clean, json.dumps(clean, sort_keys=True, default=str, ensure_ascii=False))
            row += 1


def read_shards(shards: Sequence[str], options: SourceOptions, limits: ImageLimits) -> Iterator[_Raw]:
    """Rows of WebDataset shards, streamed sample by sample; ``row`` is the sample's position in its shard."""
    for shard in shards:
        for sample in iter_samples(shard, options, limits.max_bytes):
            data, origin, problem, blob = sample_row(sample, shard)
            text = json.dumps({"shard": shard, "key": sample.key}, ensure_ascii=False)
            yield _Raw(sample.index, data, text, problem, origin=origin, blob=blob, label=shard)


def read_inputs(inputs: Sequence[str | Path], options: SourceOptions, limits: ImageLimits) -> Iterator[_Raw]:
    """Rows of every input in order: a folder, a manifest file, or WebDataset shards (brace patterns expanded).

    With several manifest files, a row's origin names its file, so rows of two files never share a key."""
    names = list(iter_inputs([str(i) for i in inputs]))
    shards = [n for n in names if is_shard(n)]
    if shards and len(shards) != len(names):
        raise ManifestError("pass either WebDataset shards (.tar) or manifests, not both in one job.")
    if shards:
        yield from read_shards(shards, options, limits)
        return
    for name in names:
        for raw in read_rows(Path(name)):
            raw.label = Path(name).name
            raw.base = name if Path(name).is_dir() else str(Path(name).parent)
            if len(names) > 1:
                raw.origin = f"{name}:{raw.origin}"
            yield raw
