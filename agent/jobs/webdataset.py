"""WebDataset tar shards as img2dataset writes them (KEY.jpg|png|webp + KEY.txt + KEY.json), read as a stream.

A shard is read member by member (``tarfile`` stream mode): memory holds one sample, never the shard, and a
member over the byte limit is skipped unread. Files belong to one sample when they share the key (the name up to
the first dot of the base name) and follow each other, as webdataset requires. A sample without an image, or
with an image over the limit, still yields a row (answered with an error record); a damaged or truncated shard
yields the samples read so far plus one error row for the shard, and the job goes on with the next shard.
"""

from __future__ import annotations

import json
import tarfile
from dataclasses import dataclass, field
from typing import Any, Iterator

from caption_agent.jobs.sources import SourceOptions, open_binary

IMAGE_EXTS = ("jpg", "jpeg", "png", "webp")
_TEXT_MAX = 64 * 1024
_JSON_MAX = 1 << 20
# Fields of img2dataset's KEY.json that a row may use (the rest is its download bookkeeping).
_JSON_FIELDS = ("caption", "alt", "id", "sku", "brand", "category", "style", "locale")


@dataclass
class Sample:
    """One sample of a shard: its key, image bytes (or why there are none), caption text and JSON fields."""

    key: str
    index: int
    image: bytes | None = None
    image_name: str = ""
    text: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    problem: str = ""


def is_shard(name: str) -> bool:
    return name.lower().endswith((".tar", ".tar.gz", ".tgz"))


def split_name(name: str) -> tuple[str, str]:
    """webdataset's rule: key = path up to the first dot of the base name; extension = the rest, lower-cased."""
    head, _, base = name.rpartition("/")
    stem, dot, ext = base.partition(".")
    return (f"{head}/{stem}" if head else stem), (ext.lower() if dot else "")


def iter_samples(shard: str, options: SourceOptions, max_bytes: int) -> Iterator[Sample]:
    """Samples of one shard in order. A read error ends the shard with a Sample whose key starts with '!'."""
    current: Sample | None = None
    index = 0
    try:
        with open_binary(shard, options) as raw, tarfile.open(fileobj=raw, mode="r|*") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                key, ext = split_name(member.name)
                if key.startswith(".") or key.startswith("_") or not ext:
                    continue
                if current is None or key != current.key:
                    if current is not None:
                        yield current
                        index += 1
                    current = Sample(key=key, index=index)
                _add(current, tar, member, ext, max_bytes)
    except (tarfile.TarError, OSError, EOFError, ValueError) as exc:
        if current is not None:
            yield current
            index += 1
        yield Sample(key=f"!shard-error-{index}", index=index, problem=f"shard unreadable after {index} samples: {exc}")
        return
    if current is not None:
        yield current


def _add(sample: Sample, tar: Any, member: tarfile.TarInfo, ext: str, max_bytes: int) -> None:
    if ext in IMAGE_EXTS:
        if sample.image is not None or sample.problem:
            return  # one image per sample: the first wins
        if member.size > max_bytes:
            sample.problem = f"image {member.name} is {member.size} bytes, over the limit of {max_bytes}"
            return
        sample.image, sample.image_name = tar.extractfile(member).read(), member.name
    elif ext == "txt" and member.size <= _TEXT_MAX:
        sample.text = tar.extractfile(member).read().decode("utf-8", errors="replace").strip() or None
    elif ext == "json" and member.size <= _JSON_MAX:
        try:
            meta = json.loads(tar.extractfile(member).read())
        except ValueError:
            return
        if isinstance(meta, dict):
            sample.meta = {k: meta[k] for k in _JSON_FIELDS if isinstance(meta.get(k), (str, int))}


def sample_row(sample: Sample, shard: str) -> tuple[dict[str, Any] | None, str, str, bytes | None]:
    """(row data, origin, problem, image bytes) of a sample, in the shape of a manifest row."""
    origin = f"{shard}#{sample.key}"
    if sample.problem or sample.image is None:
        return None, origin, sample.problem or f"sample {sample.key!r} has no image (jpg, png or webp)", None
    data: dict[str, Any] = {k: str(v) for k, v in sample.meta.items() if k not in ("caption", "alt")}
    data.setdefault("id", sample.key)
    caption = sample.text or sample.meta.get("caption") or sample.meta.get("alt")
    if caption:
        data["caption"] = str(caption)
    data["image"] = f"{shard}#{sample.image_name}"
    return data, origin, "", sample.image
