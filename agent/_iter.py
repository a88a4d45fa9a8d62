"""Small iteration helpers shared by the batch jobs and catalog ingestion."""

from __future__ import annotations

from typing import Iterable, Iterator, TypeVar

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
