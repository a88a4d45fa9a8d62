"""Where converted model weights are cached, and how one of them is built: once, by one process at a time.

Conversions (an embedder exported to ONNX, the bundled SmolLM2 GGUF turned into safetensors) are slow and their
results never change for the same inputs, so they are written once under :func:`cache_dir` and reused by every
later start. A builder holds ``<entry>.lock`` (filelock) while it works, writes into a temporary sibling folder
and renames it into place, so a concurrent or killed build never leaves a half-written entry behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

__all__ = ["CacheEntry", "build_once", "cache_dir", "entries", "fingerprint", "prune"]

ENV_VAR = "CAPTION_AGENT_CACHE_DIR"
_STAMP = ".caption-agent-cache.json"


def cache_dir() -> Path:
    """``$CAPTION_AGENT_CACHE_DIR``, else ``$XDG_CACHE_HOME/caption-agent``, else ``~/.cache/caption-agent``."""
    explicit = os.environ.get(ENV_VAR)
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "caption-agent"


def fingerprint(stamp: dict[str, Any]) -> str:
    """A short stable hash of ``stamp`` (JSON-serialisable): part of an entry's folder name."""
    return hashlib.sha256(json.dumps(stamp, sort_keys=True).encode()).hexdigest()[:12]


def read_stamp(entry: Path) -> dict[str, Any] | None:
    """The stamp of a complete entry, or None when the entry is missing or unfinished."""
    try:
        data = json.loads((entry / _STAMP).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def build_once(entry: Path, stamp: dict[str, Any], build: Callable[[Path], None], *, timeout_s: float = 1800) -> Path:
    """Return ``entry``, calling ``build(tmp_folder)`` first unless a complete entry with ``stamp`` exists.

    Only one process builds a given entry at a time (the others wait on its lock, then find it done). ``build``
    writes its files into the folder it is given; the folder is renamed to ``entry`` when ``build`` returns.
    """
    if read_stamp(entry) == stamp:
        return entry
    import filelock

    entry.parent.mkdir(parents=True, exist_ok=True)
    with filelock.FileLock(str(entry) + ".lock", timeout=timeout_s):
        if read_stamp(entry) == stamp:  # another process built it while this one waited
            return entry
        tmp = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", dir=entry.parent))
        try:
            build(tmp)
            (tmp / _STAMP).write_text(json.dumps(stamp, sort_keys=True), encoding="utf-8")
            tmp.chmod(0o755)  # mkdtemp makes it private; a server may run as another user
            if entry.exists():
                shutil.rmtree(entry)
            os.replace(tmp, entry)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return entry


@dataclass(frozen=True)
class CacheEntry:
    """One folder of the cache: what it was built from and whether it is still of use."""

    path: Path
    size_bytes: int
    stamp: dict[str, Any] | None

    @property
    def source(self) -> str | None:
        """The model folder an entry was converted from, when its stamp records one."""
        folder = (self.stamp or {}).get("folder")
        return str(folder) if folder else None

    @property
    def stale(self) -> str | None:
        """Why the entry can go (a build that never finished, a source folder that is gone), or None."""
        if self.stamp is None:
            return "unfinished build"
        if self.source is not None and not Path(self.source).is_dir():
            return "source folder is gone"
        return None


def entries(root: Path | None = None) -> Iterator[CacheEntry]:
    """Every entry under ``root`` (default :func:`cache_dir`): folders two levels down, e.g. ``onnx/<entry>``."""
    root = root or cache_dir()
    if not root.is_dir():
        return
    for kind in sorted(p for p in root.iterdir() if p.is_dir()):
        for entry in sorted(p for p in kind.iterdir() if p.is_dir()):
            size = sum(f.stat().st_size for f in entry.rglob("*") if f.is_file() and not f.is_symlink())
            yield CacheEntry(entry, size, read_stamp(entry))


def prune(
    root: Path | None = None,
    *,
    everything: bool = False,
    dry_run: bool = False,
    only: Callable[[CacheEntry], bool] | None = None,
) -> list[CacheEntry]:
    """Remove stale entries (or all with ``everything``; among those ``only`` accepts, when given) and return them;
    an entry being built is left alone."""
    import filelock

    removed = []
    for entry in list(entries(root)):
        if not (everything or entry.stale) or (only is not None and not only(entry)):
            continue
        # A build in progress holds the lock of the entry it will become; its temp sibling has no stamp yet.
        name = entry.path.name
        target = entry.path.with_name(name[1:].rsplit(".", 1)[0]) if name.startswith(".") else entry.path
        lock = filelock.FileLock(str(target) + ".lock", timeout=0)
        try:
            with lock:
                if not dry_run:
                    shutil.rmtree(entry.path, ignore_errors=True)
        except filelock.Timeout:
            continue
        if not target.exists():  # no entry left for the lock to guard (a dry run took it for a temp folder)
            Path(str(target) + ".lock").unlink(missing_ok=True)
        removed.append(entry)
    return removed
