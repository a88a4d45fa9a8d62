"""Small iteration helpers shared by the batch jobs, catalog ingestion and the service."""

from __future__ import annotations

import re
from typing import Any, BinaryIO, Iterable, Iterator, TypeVar

MAX_LINE_BYTES = 1 << 20  # one JSONL row (manifest, catalog) is at most 1 MiB; longer lines are row errors
_BOM = b"\xef\xbb\xbf"
_SURROGATES = re.compile("[\ud800-\udfff]")
_MAX_DEPTH = 32

T = TypeVar("T")


def chunked(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Lists of ``size`` consecutive items (the last may be shorter); reads ``items`` lazily."""
    if size < 1:
        raise ValueError(f"chunk size must be at least 1, got {size}")
    group: list[T] = []
    for item in items:
        group.append(item)
        if len(group) >= size:
            yield group
            group = []
    if group:
        yield group


def bounded_lines(fh: BinaryIO, limit: int = MAX_LINE_BYTES) -> Iterator[tuple[bytes, int]]:
    """``(line, length)`` of each line of a binary file (one with ``peek``), a leading UTF-8 BOM skipped.

    A line longer than ``limit`` bytes (newline excluded) comes back as its first ``limit`` bytes with its true
    length; the rest is read past in chunks, so memory stays bounded whatever the file holds.
    """
    if fh.peek(len(_BOM))[: len(_BOM)] == _BOM:  # type: ignore[attr-defined]
        fh.read(len(_BOM))
    while line := fh.readline(limit + 1):
        length = len(line.rstrip(b"\r\n"))
        if length <= limit:
            yield line, length
            continue
        head = line[:limit]
        while not line.endswith(b"\n"):
            line = fh.readline(1 << 16)
            if not line:
                break
            length += len(line.rstrip(b"\r\n"))
        yield head, length


def surrogate_field(value: Any, where: str = "", depth: int = 0) -> str | None:
    """The first field (dotted path; "" for a bare string) of nested data whose text holds a lone surrogate.

    Such text is not Unicode (a JSON ``\\ud800`` escape, or bytes that were not UTF-8 read with surrogate
    escapes): it can be neither encoded, embedded nor written, so the row that carries it is refused alone.
    """
    if isinstance(value, str):
        return where if _SURROGATES.search(value) else None
    if depth > _MAX_DEPTH:
        return None
    pairs: Iterable[tuple[Any, Any]] = ()
    if isinstance(value, dict):
        pairs = value.items()
    elif isinstance(value, (list, tuple)):
        pairs = enumerate(value)
    for key, item in pairs:
        name = f"{where}.{key}" if where else str(key)
        found = surrogate_field(key, name, depth + 1) or surrogate_field(item, name, depth + 1)
        if found is not None:
            return found
    return None


def escape_surrogates(value: Any, depth: int = 0) -> Any:
    """``value`` (nested data) with each lone surrogate in its strings written as an escape (``\\udc80``)."""
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8") if _SURROGATES.search(value) else value
    if depth > _MAX_DEPTH:
        return value
    if isinstance(value, dict):
        return {escape_surrogates(k, depth + 1): escape_surrogates(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [escape_surrogates(v, depth + 1) for v in value]
    return value
