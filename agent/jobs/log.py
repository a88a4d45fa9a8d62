"""The append-only output log of a batch job and its resume index.

Exactly-once rests on three rules: only one process writes a log (a file lock on the output's real path, so a
symlink cannot start a second writer); records become visible only whole (JSONL: a last line that is not a
complete record, torn by a kill, is cut off on reopen; Parquet: each part file is written to a temporary name,
fsync'd and renamed); and a restart skips every key already in the log. A record is durable once ``flush``
returns (write + fsync of the file and its folder).

A JSONL line counts as a record only if it is a whole JSON object with a ``key`` and a ``status``: every line is
parsed when the log is opened (about 1 s per 100k records of 1 KB). A broken last line is cut off as torn; a
broken line anywhere else means the file was edited or damaged, and the log is refused, naming the line.
The header (``<out>.job.json``) records the item key scheme (``key_version``); an output made with another
scheme is refused, since its keys cannot match this version's items. The line format, the line checks and
``read_records`` live in ``records``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Literal

from caption_agent.parquet_parts import COLUMNS as _COLUMNS
from caption_agent.parquet_parts import column as _column
from caption_agent.parquet_parts import pa as _pa
from caption_agent.parquet_parts import parquet_files as _parquet_files
from caption_agent.parquet_parts import pc as _pc
from caption_agent.parquet_parts import pq as _pq
from caption_agent.records import KEY_VERSION, OutputLogError, dumps, parse_head, scan_lines

Format = Literal["jsonl", "parquet"]
log = logging.getLogger("caption_agent.jobs")


class JobLockedError(OutputLogError):
    fix = "another job is writing this output; wait for it to finish, or pass a different --out path."


class JobMismatchError(OutputLogError):
    fix = (
        "resume with the same settings, write to a new --out path, or pass --allow-config-change to mix "
        "results made with different settings in one output."
    )


def infer_format(out: Path, fmt: str | None = None) -> Format:
    if fmt:
        if fmt not in ("jsonl", "parquet"):
            raise OutputLogError(f"unknown output format {fmt!r}.", fix="use --format jsonl or --format parquet.")
        return fmt  # type: ignore[return-value]
    return "parquet" if Path(out).suffix.lower() == ".parquet" else "jsonl"


def _kind(path: Path) -> str:
    import stat

    mode = path.stat().st_mode
    kinds = {stat.S_ISCHR: "a character device", stat.S_ISBLK: "a block device", stat.S_ISFIFO: "a FIFO"}
    return next((name for test, name in kinds.items() if test(mode)), "a socket or other special file")


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


class OutputLog:
    """Append-only record log (JSONL file or Parquet dataset folder) with a key -> status index.

    Use as a context manager; ``append`` buffers and ``flush`` makes records durable. Records are dicts with
    at least ``key`` and ``status``.
    """

    def __init__(
        self,
        path: Path,
        fmt: Format,
        *,
        kind: str,
        fingerprint: str,
        allow_config_change: bool = False,
        flush_every: int = 32,
        flush_interval_s: float = 2.0,
    ) -> None:
        # Everything (lock, header, rewrites) happens at the real path: two spellings of one output, e.g. a
        # symlink, must meet the same lock, and a rewrite must replace the file, not the link to it.
        self.path = Path(os.path.realpath(path))
        self.format = fmt
        self.flush_every = max(1, flush_every)
        self.flush_interval_s = flush_interval_s
        self.index: dict[str, str] = {}
        self.repaired_bytes = 0
        self._buffer: list[dict[str, Any]] = []
        self._last_flush = time.monotonic()
        self._fh: Any = None
        self._seq = 0
        self._failed = False  # a write failed (disk full): nothing more is written, close() only releases
        meta_dir = self.path if fmt == "parquet" else self.path.parent
        if self.path.exists() and not (self.path.is_file() or self.path.is_dir()):
            # /dev/null, a FIFO, a device: records written there are lost, and the side files (header, lock)
            # would be made in its folder (/dev).
            raise OutputLogError(
                f"--out {str(path)!r} is not a regular file or folder (it is {_kind(self.path)}); a job's output "
                "must be kept to be resumed.",
                fix="pass a file path (e.g. --out results.jsonl), or --format parquet with a folder path.",
            )
        if fmt == "parquet":
            if self.path.exists() and not self.path.is_dir():
                raise OutputLogError(f"{str(self.path)!r} is a file; Parquet output is a folder of part files.")
            self.path.mkdir(parents=True, exist_ok=True)
        else:
            if self.path.is_dir():
                raise OutputLogError(f"{str(self.path)!r} is a folder; JSONL output is one file.")
            meta_dir.mkdir(parents=True, exist_ok=True)
        self._lock = self._take_lock()
        try:
            self._check_header(kind, fingerprint, allow_config_change)
            self._open_existing()
        except BaseException:
            self._lock.release()
            raise

    # --- paths and guards ----------------------------------------------------------------------------------------
    def _side(self, name: str) -> Path:
        # Parquet readers skip files starting with "_"; JSONL keeps its side files beside it.
        return self.path / f"_{name}" if self.format == "parquet" else self.path.with_name(f"{self.path.name}.{name}")

    def _take_lock(self) -> Any:
        from filelock import FileLock, Timeout

        lock = FileLock(str(self._side("lock")), timeout=0)
        try:
            lock.acquire()
        except Timeout:
            raise JobLockedError(f"output {str(self.path)!r} is locked by another running job.") from None
        return lock

    def _check_header(self, kind: str, fingerprint: str, allow_change: bool) -> None:
        header_path = self._side("job.json")
        header = {
            "kind": kind,
            "fingerprint": fingerprint,
            "format": self.format,
            "key_version": KEY_VERSION,
            "fingerprints": [fingerprint],
        }
        if header_path.is_file():
            old = json.loads(header_path.read_text(encoding="utf-8"))
            if old.get("key_version", "k1") != KEY_VERSION:  # even with allow_change: keys would never match
                raise JobMismatchError(
                    f"{str(self.path)!r} was written with item key scheme {old.get('key_version', 'k1')!r}; this "
                    f"version keys items with {KEY_VERSION!r} (every input row gets its own record), so resuming "
                    f"it would write every item again.",
                    fix="pass a new --out path (the old output stays readable), or move the old output away.",
                )
            if old.get("kind") != kind:
                raise JobMismatchError(
                    f"{str(self.path)!r} holds {old.get('kind')!r} results, not {kind!r}.",
                    fix="pass a new --out path for this job.",
                )
            if old.get("fingerprint") != fingerprint:
                if not allow_change:
                    raise JobMismatchError(
                        f"{str(self.path)!r} was written with other settings "
                        f"({old.get('fingerprint')} != {fingerprint})."
                    )
                header["fingerprints"] = list(dict.fromkeys([*old.get("fingerprints", []), fingerprint]))
            else:
                return
        elif self._has_records():
            raise JobMismatchError(
                f"{str(self.path)!r} holds records but no {header_path.name}: its key scheme and settings are "
                f"unknown, so resuming could write every item again.",
                fix="pass a new --out path (the old output stays readable), or move the old output away.",
            )
        _write_atomic(header_path, json.dumps(header, indent=1).encode())

    def _has_records(self) -> bool:
        if self.format == "jsonl":
            return self.path.is_file() and self.path.stat().st_size > 0
        return bool(_parquet_files(self.path))

    # --- opening: repair, index ----------------------------------------------------------------------------------
    def _open_existing(self) -> None:
        if self.format == "jsonl":
            self._open_jsonl()
        else:
            self._open_parquet()

    def _open_jsonl(self) -> None:
        good = 0
        if self.path.is_file():
            with open(self.path, "rb") as fh:
                for line, record in scan_lines(fh, self.path):
                    if record is None:
                        continue  # the last line, torn by a kill: never acknowledged, cut off below
                    self.index[record["key"]] = record["status"]
                    good += len(line)
            size = self.path.stat().st_size
            if size > good:
                self.repaired_bytes = size - good
                log.warning(
                    "cut a torn last record off the output log",
                    extra={"path": str(self.path), "bytes": self.repaired_bytes},
                )
                with open(self.path, "r+b") as fh:
                    fh.truncate(good)
                    os.fsync(fh.fileno())
        self._fh = open(self.path, "ab", buffering=0)  # noqa: SIM115 - appended to (os.write) until close()
        _fsync_dir(self.path.parent)

    def _parquet_files(self) -> list[tuple[str, int, Path]]:
        return _parquet_files(self.path)

    def _open_parquet(self) -> None:
        pq = _pq()
        for tmp in self.path.glob("*.tmp"):
            tmp.unlink()  # an unfinished part: its records were never acknowledged
        live = _parquet_files(self.path, live_only=True)
        for entry in self._parquet_files():
            if entry not in live:
                entry[2].unlink()
        for _, seq, p in live:
            table = pq.read_table(p, columns=["key", "status"])
            for key, status in zip(table.column("key").to_pylist(), table.column("status").to_pylist()):
                self.index[key] = status
            self._seq = max(self._seq, seq + 1)

    # --- writing -------------------------------------------------------------------------------------------------
    def append(self, records: list[dict[str, Any]]) -> None:
        """Buffer records; flush when the batch is full or old enough."""
        self._buffer.extend(records)
        if len(self._buffer) >= self.flush_every or time.monotonic() - self._last_flush >= self.flush_interval_s:
            self.flush()

    def flush(self) -> None:
        """Write buffered records and fsync; they survive a kill once this returns."""
        self._last_flush = time.monotonic()
        if not self._buffer:
            return
        if self._failed:
            return
        batch, self._buffer = self._buffer, []
        try:
            if self.format == "jsonl":
                self._append_jsonl(b"".join(dumps(r) for r in batch))
            else:
                self._write_part(batch, f"part-{self._seq:08d}.parquet")
                self._seq += 1
        except OSError as exc:
            self._failed = True
            raise OutputLogError(
                f"cannot write the output {str(self.path)!r}: {exc.strerror or exc}; {len(self.index)} records "
                f"written before are kept, the {len(batch)} not written are computed again on the next run.",
                fix="free space on that disk (or pass an --out on another one), then run the same command again: "
                "it resumes after the records already written.",
            ) from None
        for record in batch:
            self.index[record["key"]] = record["status"]

    def _append_jsonl(self, data: bytes) -> None:
        """Append whole lines and fsync; a failed write (disk full) is cut back off, so the log ends whole."""
        fd = self._fh.fileno()
        start = os.fstat(fd).st_size
        try:
            view = memoryview(data)
            while view:  # an unbuffered write may be partial
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        except OSError:
            with contextlib.suppress(OSError):  # else the torn last line is cut off when the log is reopened
                os.ftruncate(fd, start)
            raise

    def _write_part(self, records: list[dict[str, Any]], name: str) -> None:
        pa, pq = _pa(), _pq()
        table = pa.table({c: pa.array([_column(r, c) for r in records], type=pa.string()) for c in _COLUMNS})
        tmp = self.path / (name + ".tmp")
        try:
            with open(tmp, "wb") as fh:
                pq.write_table(table, fh, compression="zstd")
                fh.flush()
                os.fsync(fh.fileno())
        except OSError:
            tmp.unlink(missing_ok=True)
            raise
        os.replace(tmp, self.path / name)
        _fsync_dir(self.path)

    def drop_errors(self) -> int:
        """Remove error records (atomically) so that a run reprocesses exactly those keys; returns how many."""
        self.flush()
        dropped = [k for k, s in self.index.items() if s == "error"]
        if not dropped:
            return 0
        self._rewrite(drop_status="error")
        for key in dropped:
            del self.index[key]
        return len(dropped)

    def compact(self) -> None:
        """Parquet: merge part files into one (crash-safe); JSONL: nothing to do."""
        self.flush()
        if self.format == "parquet" and len(self._parquet_files()) > 1:
            self._rewrite(drop_status=None)

    def _rewrite(self, drop_status: str | None) -> None:
        """Copy the log without records of ``drop_status``, streaming, then swap it in with one rename."""
        if self.format == "jsonl":
            self._fh.close()
            tmp = self.path.with_name(self.path.name + ".tmp")
            with open(self.path, "rb") as src, open(tmp, "wb") as dst:
                for number, line in enumerate(src, 1):
                    if parse_head(line, self.path, number)[1] != drop_status:
                        dst.write(line)
                dst.flush()
                os.fsync(dst.fileno())
            os.replace(tmp, self.path)
            _fsync_dir(self.path.parent)
            self._fh = open(self.path, "ab", buffering=0)  # noqa: SIM115 - appended to until close()
            return
        pa, pq = _pa(), _pq()
        files = _parquet_files(self.path, live_only=True)
        last = max(seq for _, seq, _ in files)
        name = f"compact-{last:08d}.parquet"
        tmp = self.path / (name + ".tmp")
        schema = pa.schema([(c, pa.string()) for c in _COLUMNS])
        with open(tmp, "wb") as fh:
            with pq.ParquetWriter(fh, schema, compression="zstd") as writer:
                for _, _, part in files:  # one part in memory at a time
                    table = pq.read_table(part)
                    for col in _COLUMNS:  # parts written before a column existed: nulls
                        if col not in table.column_names:
                            table = table.append_column(col, pa.nulls(table.num_rows, pa.string()))
                    table = table.select(list(_COLUMNS))
                    if drop_status is not None:
                        table = table.filter(_pc().not_equal(table["status"], drop_status))
                    writer.write_table(table)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path / name)
        _fsync_dir(self.path)
        for kind, seq, p in self._parquet_files():
            if not (kind == "compact" and seq == last):
                p.unlink()
        self._seq = last + 1

    def close(self) -> None:
        try:
            self.flush()
        finally:
            if self._fh is not None:
                self._fh.close()
                self._fh = None
            self._lock.release()

    def __enter__(self) -> OutputLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
