"""Caption records on disk: the JSONL line format of a batch job's output, and reading an output back (public:
the applications share it; batch jobs write these files, eval, review and localization read them).

``dumps`` writes a record as one line with ``key`` and ``status`` first, so ``parse_head`` can read them without
parsing the rest. ``scan_lines`` checks every line of a JSONL log (only the last may be torn); the output log uses it
when it reopens a log, and ``read_records`` when it reads a finished output (JSONL or Parquet) for ``eval``,
``review export``, sidecars and localization. ``OutputLogError`` is the error of an output that cannot be opened,
resumed or read.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, Iterator

from caption_agent.errors import CaptionAgentError
from caption_agent.parquet_parts import parquet_files as _parquet_files
from caption_agent.parquet_parts import pq as _pq

# Bump when the key recipe changes, so old logs are never matched by accident (the output log refuses them).
# k1: content + request (+ id); repeated rows shared one record. k2: row origin + id + content + request.
KEY_VERSION = "k2"


def digest(*parts: str) -> str:
    """A 128-bit hex key over ``parts`` (NUL-separated, so parts cannot run into each other)."""
    # surrogatepass: a name that is not valid UTF-8 (a shard member's, read with surrogate escapes) still has a
    # key of its own; valid text encodes exactly as before.
    return hashlib.sha256("\0".join((KEY_VERSION, *parts)).encode("utf-8", "surrogatepass")).hexdigest()[:32]


def fingerprint(fields: dict[str, Any]) -> str:
    """Canonical JSON of the fields that decide an item's output (unset fields left out)."""
    return json.dumps(
        {k: v for k, v in sorted(fields.items()) if v is not None}, separators=(",", ":"), ensure_ascii=False
    )


_HEAD = re.compile(rb'^\{"key":"([^"\\]+)","status":"([a-z]+)"')


class OutputLogError(CaptionAgentError):
    """An output that cannot be opened, resumed or read."""

    fix = "pass a new --out path, or move the existing output away."


def dumps(record: dict[str, Any]) -> bytes:
    """One JSONL line; ``key`` and ``status`` come first so the resume index can read them without parsing."""
    ordered = {
        "key": record["key"],
        "status": record["status"],
        **{k: v for k, v in record.items() if k not in ("key", "status")},
    }
    line = json.dumps(ordered, ensure_ascii=False, separators=(",", ":")) + "\n"
    try:
        return line.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate in some text: written as its JSON escape, nothing lost
        return (json.dumps(ordered, ensure_ascii=True, separators=(",", ":")) + "\n").encode("ascii")


def _parse_object(line: bytes) -> dict[str, Any] | None:
    """The JSON object on a line that holds one whole object, else None (torn, edited or damaged)."""
    if not line.rstrip(b"\r\n").endswith(b"}") or not line.endswith(b"\n"):
        return None
    try:
        record = json.loads(line)  # a head that looks right is not enough: the line must be whole
    except (ValueError, RecursionError):
        return None
    return record if isinstance(record, dict) else None


def _parse_record(line: bytes) -> dict[str, Any] | None:
    """The record on a line that is one whole job record (an object with ``key`` and ``status``), else None."""
    record = _parse_object(line)
    if record is None or not (
        isinstance(record.get("key"), str) and record["key"] and isinstance(record.get("status"), str)
    ):
        return None
    return record


def scan_lines(fh: Any, path: Path, parse: Any = _parse_record) -> Iterator[tuple[bytes, dict[str, Any] | None]]:
    """``(line, record)`` for each line of a JSONL log; only the last line may come with None (a torn record,
    to be cut or skipped). A broken line before the last raises OutputLogError naming it."""
    broken: int | None = None
    for number, line in enumerate(fh, 1):
        if broken is not None:
            raise OutputLogError(
                f"{str(path)!r} line {broken} is not a complete job record, and it is not the last line: the file "
                f"was edited or damaged, or is not an output of this tool.",
                fix=f"delete or repair line {broken} (the other records are intact), or pass a new --out path.",
            )
        record = parse(line)
        if record is None:
            broken = number
        yield line, record


def parse_head(line: bytes, path: Path, number: int) -> tuple[str, str]:
    """Key and status of a line of a log already checked by ``scan_lines`` (the fast path for rewrites)."""
    m = _HEAD.match(line)
    if m:
        return m.group(1).decode(), m.group(2).decode()
    record = _parse_record(line)
    if record is None:
        raise OutputLogError(
            f"{str(path)!r} line {number} is not a job record; the file was edited or is not an output of this tool."
        )
    return record["key"], record["status"]


def read_records(path: Path | str) -> Iterator[dict[str, Any]]:
    """Every record of a JSONL output file or a Parquet output (folder or single file), in storage order.

    A broken last JSONL line (a job killed mid-write, not yet reopened) is skipped: it was never acknowledged.
    A broken line before the last raises OutputLogError. Blank lines are skipped; records written by other
    tools (objects without ``key``) are read too, for ``eval`` and ``review export``.
    """
    path = Path(path)
    if path.is_dir() or path.suffix.lower() == ".parquet":
        pq = _pq()
        files = [p for _, _, p in _parquet_files(path, live_only=True)] if path.is_dir() else [path]
        for file in files:
            table = pq.read_table(file, columns=["record"])
            for text in table.column("record").to_pylist():
                yield json.loads(text)
        return
    with open(path, "rb") as fh:
        lines = (line for line in fh if line.strip())
        for _, record in scan_lines(lines, path, _parse_object):
            if record is not None:
                yield record
