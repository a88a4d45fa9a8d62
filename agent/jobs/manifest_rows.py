"""Batch input rows: a folder of images, JSONL/CSV/Parquet manifests or WebDataset shards, read lazily.

Each reader yields raw rows (``_Raw``): the row's data as read, its number and origin, and, for a row that cannot
be read, the problem, so that ``manifest`` answers it with an error record and reading goes on. An input that is
missing or of an unknown type raises ``ManifestError``.
"""

from __future__ import annotations

import csv
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

from caption_agent._iter import MAX_LINE_BYTES, bounded_lines, surrogate_field
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
    """Rows of a manifest, lazily. A folder lists its image files, sorted, hidden files skipped. A row whose
    text is not Unicode (a lone surrogate, e.g. a JSON ``\\ud800`` escape) is that row's problem."""
    for raw in _read_rows(Path(path)):
        yield _unicode_checked(raw)


def _unicode_checked(raw: _Raw) -> _Raw:
    bad = surrogate_field(raw.data) if raw.data is not None and not raw.problem else None
    if bad is not None:
        raw.data = None
        raw.text = raw.text.encode("utf-8", "backslashreplace").decode("utf-8")
        raw.problem = f"{bad or 'row'}: not valid Unicode text (a lone surrogate); write the manifest as UTF-8"
    return raw


def _read_rows(path: Path) -> Iterator[_Raw]:
    if path.is_dir():
        yield from _folder_rows(path)
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


def _folder_rows(path: Path) -> Iterator[_Raw]:
    """One row per image file of a folder (by suffix, hidden names skipped), in sorted order. An entry with an
    image's name that cannot be an image (a FIFO, a device, a socket, a link to nothing, a name that is not
    UTF-8) and a subfolder that cannot be listed are rows with their problem: never silently left out, and
    never opened (reading a FIFO would wait forever)."""
    entries: list[tuple[tuple[str, ...], str]] = []  # (relative parts, problem)
    unlisted: list[tuple[tuple[str, ...], str]] = []

    def listing_failed(exc: OSError) -> None:
        rel = Path(exc.filename or path).relative_to(path).parts
        reason = exc.strerror or type(exc).__name__
        unlisted.append((rel, f"is a folder that cannot be listed ({reason}). Fix: {_ENTRY_FIX}"))

    for folder, dirs, files in os.walk(path, onerror=listing_failed):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        rel_folder = Path(folder).relative_to(path).parts
        for name in files:  # a link to nothing is among them; links to folders are not followed
            if name.startswith(".") or Path(name).suffix.lower() not in IMAGE_SUFFIXES:
                continue
            entries.append(((*rel_folder, name), _entry_problem(os.path.join(folder, name))))
    entries.extend(unlisted)
    for i, (parts, problem) in enumerate(sorted(entries)):
        rel = "/".join(parts)
        shown = _printable(rel)
        if problem:
            yield _Raw(i, None, shown, f"'{shown}' {problem}", origin=f"path:{shown}")
        else:
            yield _Raw(i, {"image": os.path.abspath(os.path.join(path, *parts))}, rel, origin=f"path:{rel}")


_ENTRY_FIX = "put image files in the folder (or remove this entry); the other files are captioned as usual."


def _printable(name: str) -> str:
    """``name`` as valid UTF-8: bytes of a non-UTF-8 file name (surrogate escapes) written as ``\\xNN``."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def _entry_problem(entry: str) -> str:
    """Why a folder entry named like an image cannot be read as one ("" when it can)."""
    if _printable(entry) != entry:
        return "has a file name that is not valid UTF-8. Fix: rename the file (e.g. `convmv -f latin1 -t utf-8`)."
    try:
        mode = os.stat(entry).st_mode  # follows symbolic links
    except OSError as exc:
        if os.path.islink(entry):
            return f"is a symbolic link to a missing file ({os.readlink(entry)!r}). Fix: {_ENTRY_FIX}"
        return f"cannot be read ({exc.strerror or type(exc).__name__}). Fix: {_ENTRY_FIX}"
    if stat.S_ISREG(mode):
        return ""
    kinds = {stat.S_ISFIFO: "a FIFO", stat.S_ISCHR: "a character device", stat.S_ISBLK: "a block device"}
    kinds.update({stat.S_ISSOCK: "a socket", stat.S_ISDIR: "a folder"})
    kind = next((name for test, name in kinds.items() if test(mode)), "not a regular file")
    return f"is {kind}, not an image file. Fix: {_ENTRY_FIX}"


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
            yield _unicode_checked(_Raw(sample.index, data, text, problem, origin=origin, blob=blob, label=shard))


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
