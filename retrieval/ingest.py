"""Catalog ingestion: validate a whole file, then upsert changed products in batches.

Two passes over the file. Pass 1 validates every row (rejects go to the rejects file), finds duplicate skus
(the last row wins) and fails on file-level problems before anything is written. Pass 2 embeds and upserts
only rows whose content hash differs from the stored one, so an interrupted run converges when re-run.
Writes overlap with embedding of the next batch (one writer thread) to keep the embedder busy.
"""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from caption_agent._extras import require
from caption_agent._iter import chunked
from caption_agent.errors import CatalogError
from caption_agent.retrieval.catalog import detect_format, read_catalog
from caption_agent.retrieval.product import Product, RowRejected
from caption_agent.retrieval.store import CatalogStore

__all__ = ["IngestSummary", "ingest_file"]

_KEEP_ERRORS = 50  # rejects kept in the summary; the rejects file has all of them
# Rows per write = batch_size * this: fewer Chroma round trips and larger length-sorted encode calls.
WRITE_BATCHES = 8


@dataclass
class IngestSummary:
    """What one ingestion did. ``rejected`` rows are in ``rejects_path`` (row, field, reason, raw)."""

    file: str
    format: str
    collection: str
    location: str
    embedder: str
    rows: int = 0
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    removed: int = 0
    duplicates: int = 0
    duplicate_skus: dict[str, list[int]] = field(default_factory=dict)
    errors: list[dict[str, Any]] = field(default_factory=list)
    rejects_path: str | None = None
    embedded: int = 0
    seconds: float = 0.0
    embed_seconds: float = 0.0
    total: int = 0

    @property
    def products_per_s(self) -> float:
        """Embedded products per second of wall time (0 when nothing needed embedding)."""
        return self.embedded / self.seconds if self.seconds and self.embedded else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "products_per_s": round(self.products_per_s, 2)}

    def render(self) -> str:
        """Human summary, including the duplicate and reject notices users must see."""
        lines = [
            f"ingested {self.file} ({self.format}) into {self.collection!r} at {self.location} "
            f"[{self.embedder}] in {self.seconds:.1f}s",
            f"  added {self.added}  updated {self.updated}  unchanged {self.unchanged}  "
            f"rejected {self.rejected}  removed {self.removed}  (collection now {self.total})",
        ]
        if self.duplicates:
            shown = ", ".join(
                f"{sku} (rows {', '.join(map(str, rows))})" for sku, rows in list(self.duplicate_skus.items())[:5]
            )
            lines.append(
                f"  {self.duplicates} row(s) repeated a sku seen earlier; the last row won: {shown}"
                + (" ..." if len(self.duplicate_skus) > 5 else "")
            )
        for err in self.errors[:5]:
            where = f"row {err['row']}" + (f", field {err['field']!r}" if err["field"] else "")
            lines.append(f"  rejected {where}: {err['reason']}")
        if self.rejected > 5:
            lines.append(f"  ... {self.rejected - 5} more")
        if self.rejected and self.rejects_path:
            lines.append(f"  all rejected rows: {self.rejects_path}")
        return "\n".join(lines)


def ingest_file(
    path: str | Path,
    store: CatalogStore,
    *,
    full_snapshot: bool = False,
    rejects_path: str | Path | None = None,
    batch_size: int = 64,
    progress: bool = False,
    fmt: str | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> IngestSummary:
    """Ingest a CSV/TSV/JSONL/Parquet catalog into ``store`` (opened with ``writer=True``).

    ``full_snapshot`` removes stored products that are absent from the file (never those whose row was
    rejected). ``rejects_path`` receives one JSON line per rejected row (written even when empty).
    ``on_batch`` is called with the number of products handled after each batch (tests use it to interrupt).
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    if not store.is_writer:
        raise CatalogError(
            "ingestion needs a writable store.", fix="open it with CatalogStore.open(settings, writer=True)."
        )
    started = time.perf_counter()
    path = Path(path)
    fmt = fmt or detect_format(path)
    summary = IngestSummary(
        file=str(path),
        format=fmt,
        collection=store.name,
        location=store.location,
        embedder=store.embedder.model_id,
        rejects_path=str(rejects_path) if rejects_path is not None else None,
    )
    if not path.is_file():
        raise CatalogError(f"catalog file {str(path)!r} does not exist.", fix="check the path.")
    before = _file_stamp(path)
    last = _validate_pass(path, fmt, summary, rejects_path)
    todo = sum(1 for row in last.values() if row > 0)
    if full_snapshot and todo == 0:
        raise CatalogError(
            f"{str(path)!r} has no valid products; refusing to treat it as a full snapshot "
            "(that would delete the whole collection).",
            fix="fix the rejected rows, or run without --full-snapshot.",
        )
    _check_unchanged(path, before)
    _write_pass(path, fmt, store, last, summary, batch_size, todo, progress, on_batch)
    _check_unchanged(path, before)  # rows were matched to pass 1 by row number: a rewritten file breaks that
    if full_snapshot:
        stale = [sku for sku in store.iter_skus() if sku not in last]
        store.delete(stale)
        summary.removed = len(stale)
    summary.total = store.count()
    summary.seconds = time.perf_counter() - started
    return summary


def _file_stamp(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns


def _check_unchanged(path: Path, before: tuple[int, int]) -> None:
    if _file_stamp(path) != before:
        raise CatalogError(
            f"{str(path)!r} changed while it was being ingested.",
            fix="ingest a finished file (write exports to a temporary name, then rename); re-running converges.",
        )


def _validate_pass(path: Path, fmt: str, summary: IngestSummary, rejects_path: str | Path | None) -> dict[str, int]:
    """Read every row once. Returns sku -> its last row number, negative when that last row was rejected."""
    last: dict[str, int] = {}
    tmp = Path(f"{rejects_path}.tmp") if rejects_path is not None else None
    out = tmp.open("w", encoding="utf-8") if tmp is not None else None
    try:
        for row, item in read_catalog(path, fmt):
            summary.rows += 1
            sku = item.sku
            if sku and sku in last:
                summary.duplicates += 1
                if sku in summary.duplicate_skus:
                    summary.duplicate_skus[sku].append(row)
                elif len(summary.duplicate_skus) < 100:  # enough to show; the count covers the rest
                    summary.duplicate_skus[sku] = [abs(last[sku]), row]
            if isinstance(item, RowRejected):
                summary.rejected += 1
                record = item.to_reject()
                if len(summary.errors) < _KEEP_ERRORS:
                    summary.errors.append({k: v for k, v in record.items() if k != "raw"})
                if out is not None:
                    out.write(_reject_line(record))
                if sku:  # a bad last row keeps the stored product as it is (and safe from snapshot removal)
                    last[sku] = -row
                continue
            last[item.sku] = row
    except BaseException:
        if out is not None and tmp is not None:
            out.close()
            tmp.unlink(missing_ok=True)
        raise
    if out is not None and tmp is not None and rejects_path is not None:
        out.close()
        os.replace(tmp, rejects_path)
    return last


def _reject_line(record: dict[str, Any]) -> str:
    try:
        return json.dumps(record, ensure_ascii=False, default=str) + "\n"
    except (ValueError, RecursionError):  # a raw row too deeply nested (or circular) to serialize: keep its text
        return json.dumps({**record, "raw": repr(record["raw"])[:2000]}, ensure_ascii=False, default=str) + "\n"


def _write_pass(
    path: Path,
    fmt: str,
    store: CatalogStore,
    last: dict[str, int],
    summary: IngestSummary,
    batch_size: int,
    todo: int,
    progress: bool,
    on_batch: Callable[[int], None] | None,
) -> None:
    bar = _progress(todo, progress, path.name)
    # Embedding is the bottleneck; Chroma writes run in one background thread so they overlap it.
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="catalog-writer")
    pending: Future[None] | None = None
    done = 0
    try:
        for batch in chunked(_winning_rows(path, fmt, last), batch_size * WRITE_BATCHES):
            stored = store.content_hashes([p.sku for p in batch])
            changed = [p for p in batch if stored.get(p.sku) != p.content_hash()]
            for p in changed:
                if p.sku in stored:
                    summary.updated += 1
                else:
                    summary.added += 1
            summary.unchanged += len(batch) - len(changed)
            vectors = np.zeros((0, store.embedder.dim), dtype=np.float32)
            if changed:
                t0 = time.perf_counter()
                vectors = store.embedder.encode([p.embedding_text() for p in changed], batch_size=batch_size)
                summary.embed_seconds += time.perf_counter() - t0
                summary.embedded += len(changed)
            if pending is not None:
                pending.result()  # at most one write in flight: bounded memory, errors surface promptly
            pending = pool.submit(store.upsert, changed, vectors) if changed else None
            done += len(batch)
            bar.update(len(batch))
            if on_batch is not None:
                on_batch(done)
        if pending is not None:
            pending.result()
            pending = None
    finally:
        if pending is not None:  # interrupted: let the in-flight write finish so the store stays consistent
            pending.exception()
        pool.shutdown(wait=True)
        bar.close()


def _winning_rows(path: Path, fmt: str, last: dict[str, int]) -> Iterator[Product]:
    """Valid rows that are the last occurrence of their sku."""
    for row, item in read_catalog(path, fmt):
        if isinstance(item, Product) and last.get(item.sku) == row:
            yield item


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, enabled: bool, label: str) -> Any:
    if not enabled:
        return _NoBar()
    tqdm = require("tqdm", "lite", "The ingestion progress bar")
    # tqdm shows count, rate (products/s) and ETA from the total known after the validation pass.
    return tqdm.tqdm(total=total, unit="product", desc=f"ingest {label}", dynamic_ncols=True, smoothing=0.1)
