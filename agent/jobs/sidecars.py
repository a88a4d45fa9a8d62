"""Caption-only WebDataset sidecar shards: one per input shard, same sample keys, KEY.txt + KEY.json.

Written after the job from its output log (the log stays the truth, so sidecars can be rebuilt at any time):
records are spooled per shard to a temporary folder (bounded memory whatever the dataset's size), then each
sidecar is written to ``NAME.tar.tmp``, fsync'd and renamed, so a reader never sees half a shard. A sample's
``.txt`` holds the kept caption; samples that failed or were filtered get only a ``.json`` that says why.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

from caption_agent.jobs.webdataset import split_name
from caption_agent.records import read_records

_JSON_KEYS = ("key", "status", "original", "scores", "kept", "filtered", "error", "style", "locale", "decision")


def _sample_key(source: str) -> tuple[str, str]:
    shard, _, name = source.rpartition("#")
    return shard, split_name(name)[0]


def write_sidecars(out: Path, folder: Path, shards: list[str]) -> list[Path]:
    """Write one sidecar shard per input shard into ``folder``; returns their paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    index = {s: i for i, s in enumerate(shards)}
    spool = Path(tempfile.mkdtemp(prefix=".spool-", dir=folder))
    written: list[Path] = []
    try:
        handles: dict[int, Any] = {}
        for record in read_records(out):
            source = str(record.get("source") or "")
            shard, key = _sample_key(source)
            if shard not in index or key.startswith("!"):
                continue
            n = index[shard]
            if n not in handles:
                handles[n] = open(spool / f"{n}.jsonl", "a", encoding="utf-8")  # noqa: SIM115 - closed below
            line = {"row": record.get("row", 0), "sample": key, **{k: record[k] for k in _JSON_KEYS if k in record}}
            if record.get("status") in ("ok", "review") and record.get("text") and not record.get("filtered"):
                line["text"] = record["text"]
            handles[n].write(json.dumps(line, ensure_ascii=False) + "\n")
        for fh in handles.values():
            fh.close()
        for n in sorted(handles):
            name = shards[n].rstrip("/").rpartition("/")[2]
            written.append(_write_shard(spool / f"{n}.jsonl", folder / name))
    finally:
        shutil.rmtree(spool, ignore_errors=True)
    return written


def _add(tar: tarfile.TarFile, name: str, data: bytes, mtime: float) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), mtime, 0o644
    tar.addfile(info, io.BytesIO(data))


def _write_shard(spooled: Path, target: Path) -> Path:
    with open(spooled, encoding="utf-8") as fh:
        lines = sorted((json.loads(x) for x in fh), key=lambda r: (int(r.get("row") or 0), r["sample"]))
    tmp = target.with_name(target.name + ".tmp")
    now = time.time()
    with open(tmp, "wb") as raw:
        with tarfile.open(fileobj=raw, mode="w") as tar:
            for line in lines:
                key = line.pop("sample")
                text = line.pop("text", None)
                line.pop("row", None)
                if text is not None:
                    _add(tar, f"{key}.txt", text.encode("utf-8"), now)
                _add(tar, f"{key}.json", json.dumps(line, ensure_ascii=False).encode("utf-8"), now)
        raw.flush()
        os.fsync(raw.fileno())
    os.replace(tmp, target)
    return target
