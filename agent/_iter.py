"""Small iteration helpers shared by the batch jobs and catalog ingestion."""

from __future__ import annotations

from typing import BinaryIO, Iterable, Iterator, TypeVar

MAX_LINE_BYTES = 1 << 20  # one JSONL row (manifest, catalog) is at most 1 MiB; longer lines are row errors
_BOM = b"\xef\xbb\xbf"

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
