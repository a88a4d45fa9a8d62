"""Batch items: the rows of a job's inputs (read by ``manifest_rows``) turned lazily into items with stable keys.

Every input row is answered with its own record. An item's ``key`` is the row's identity in the output log: where
the row comes from (its file's path relative to the folder for a folder input, its row number for a manifest), the
caller's ``id`` when given, the image's content hash and a fingerprint of the request (style, locale, product
hint, budgets). So two rows never share a key, a restart skips exactly the rows already written, and a changed
file gets a new key (it is recomputed). Its ``cache_key`` is content hash + request only: rows that ask the same
thing of the same bytes share one computation, and the copies name the row they reused in ``duplicate_of``.
A row that cannot be read or validated becomes an item that carries its error.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError

from caption_agent._iter import chunked
from caption_agent.config import ImageLimits
from caption_agent.errors import CaptionAgentError
from caption_agent.jobs.manifest_rows import ManifestError, _Raw, read_inputs
from caption_agent.jobs.manifest_rows import read_shards as read_shards  # imported from here by ray_sources
from caption_agent.jobs.sources import SourceOptions, content_hash, fetch_bytes, is_remote
from caption_agent.records import digest, fingerprint
from caption_agent.schemas import CaptionRequest, ProductHint

_HASH_CHUNK = 1 << 20


class ManifestRow(BaseModel):
    """One manifest row as users write it. Paths are relative to the manifest's folder."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    image: str = Field(
        validation_alias=AliasChoices("image", "path", "image_path"),
        min_length=1,
        max_length=4096,
        description="Image: a file path (relative to the manifest's folder), an object-store URI (s3://, gs://, "
        "az://), an http(s) URL (fetched only from --url-allow hosts), or the bytes themselves (a Parquet binary "
        "column).",
    )
    caption: str | None = Field(
        None,
        validation_alias=AliasChoices("caption", "alt", "alt_text"),
        max_length=10_000,
        description="The row's existing caption (recaptioning): untrusted text, kept beside the new caption.",
    )
    id: str | None = Field(None, max_length=256, description="Caller's id, echoed in the output record.")
    sku: str | None = Field(None, max_length=128, description="Product id in the catalog.")
    brand: str | None = Field(None, max_length=128, description="Brand hint.")
    category: str | None = Field(None, max_length=128, description="Category hint.")
    style: str | None = Field(None, max_length=64, description="Style preset; the job default when unset.")
    locale: str | None = Field(None, max_length=35, description="BCP-47 locale; the job default when unset.")
    n_candidates: int | None = Field(None, ge=1, le=32, description="Drafts per image.")
    max_chars: int | None = Field(None, ge=10, le=5000, description="Length budget.")


def content_id(path: str, limits: ImageLimits) -> str:
    """``sha256:<hex>`` of the file's bytes, or a stable marker for a file that cannot be hashed.

    Missing, empty and oversized files still get a key (from the path) so that they yield one error record.
    """
    try:
        size = os.stat(path).st_size
    except OSError:
        return f"missing:{path}"
    if size == 0:
        return f"empty:{path}"
    if size > limits.max_bytes:
        return f"oversize:{size}:{path}"
    h = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            while chunk := fh.read(_HASH_CHUNK):
                h.update(chunk)
    except OSError as exc:
        return f"unreadable:{type(exc).__name__}:{path}"
    return "sha256:" + h.hexdigest()


class JobItem:
    """What every job item shares: JSON round-trip (for Ray workers) and stamping its fields on its record.

    Subclasses are frozen dataclasses with ``row``, ``style``, ``locale``, ``id`` and the field named ``ORIGIN``.
    """

    ORIGIN = "source"

    def annotate(self, record: dict[str, Any]) -> dict[str, Any]:
        """Stamp this item's own fields (where it came from) on a record computed, cached or failed for it."""
        record.update({self.ORIGIN: getattr(self, self.ORIGIN), "row": self.row})  # type: ignore[attr-defined]
        record.setdefault("style", self.style)  # type: ignore[attr-defined]
        record.setdefault("locale", self.locale)  # type: ignore[attr-defined]
        record.pop("id", None)
        if self.id is not None:  # type: ignore[attr-defined]
            record["id"] = self.id  # type: ignore[attr-defined]
        return record

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"), ensure_ascii=False)  # type: ignore[call-overload]

    @classmethod
    def from_json(cls, text: str) -> Any:
        return cls(**json.loads(text))


@dataclass(frozen=True)
class CaptionItem(JobItem):
    """One unit of a caption job. Plain data, so it pickles to Ray workers and round-trips through JSON."""

    key: str
    cache_key: str
    row: int
    source: str
    style: str
    locale: str
    id: str | None = None
    sku: str | None = None
    brand: str | None = None
    category: str | None = None
    n_candidates: int | None = None
    max_chars: int | None = None
    error: dict[str, str] | None = None  # a row that could not be read: written as an error record as is
    original: str | None = None  # the row's existing caption (untrusted), kept beside the new one
    blob: bytes | None = field(default=None, repr=False)  # the image's bytes: inline, remote or from a shard

    def request(self) -> CaptionRequest:
        return CaptionRequest(
            image=self.blob if self.blob is not None else self.source,
            style=self.style,
            locale=self.locale,
            key=self.key,
            hint=ProductHint(sku=self.sku, brand=self.brand, category=self.category),
            n_candidates=self.n_candidates,
            max_chars=self.max_chars,
            old_caption=self.original,
        )

    def annotate(self, record: dict[str, Any]) -> dict[str, Any]:
        record = super().annotate(record)
        if self.original is not None:
            record["original"] = self.original
        if self.blob is not None and isinstance(record.get("image"), dict):
            record["image"]["source"] = self.source  # not "<bytes>": where the bytes came from
        return record

    def to_json(self) -> str:
        data = asdict(self)
        if self.blob is not None:
            data["blob"] = base64.b64encode(self.blob).decode("ascii")
        return json.dumps(data, separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> Any:
        data = json.loads(text)
        if data.get("blob") is not None:
            data["blob"] = base64.b64decode(data["blob"])
        return cls(**data)


def _column_problem(error: Any) -> str:
    """One validation error of a row, with a "did you mean" for a misspelt column (``locle`` -> ``locale``)."""
    import difflib

    where = ".".join(map(str, error["loc"])) or "row"
    if error["type"] != "extra_forbidden":
        return f"{where}: {error['msg']}"
    names = [a for f in ManifestRow.model_fields.values() for a in getattr(f.validation_alias, "choices", [])]
    names += list(ManifestRow.model_fields)
    close = difflib.get_close_matches(str(error["loc"][0]), names, n=1, cutoff=0.6)
    return f"unknown column {where!r}" + (f"; did you mean {close[0]!r}?" if close else "")


def _row_error(raw: _Raw, label: str, style: str, locale: str, problem: str) -> CaptionItem:
    error = {
        "type": "ManifestRowError",
        "stage": "manifest",
        "message": f"{label} {f'line {raw.line}' if raw.line else f'row {raw.row + 1}'}: {problem}"
        + ("" if " Fix: " in problem else f". Fix: {ManifestError.fix}"),  # a folder entry says its own fix
    }
    key = digest("row", raw.origin, raw.text)
    source = raw.origin if raw.blob is not None or "#" in raw.origin else f"{label}#{raw.row}"
    return CaptionItem(key=key, cache_key=key, row=raw.row, source=source, style=style, locale=locale, error=error)


def _to_item(
    raw: _Raw,
    base: Path,
    label: str,
    style: str,
    locale: str,
    limits: ImageLimits,
    sources: SourceOptions | None = None,
) -> CaptionItem:
    """The item of one row: its key (content hashed where the bytes are: read here for remote images)."""
    label = raw.label or label
    base = Path(raw.base) if raw.base else base
    parsed, problem, blob = _parse_row(raw, label)
    if parsed is None:
        return _row_error(raw, label, style, locale, problem or "")
    fields: dict[str, Any] = {
        "style": parsed.style or style,
        "locale": parsed.locale or locale,
        "sku": parsed.sku,
        "brand": parsed.brand,
        "category": parsed.category,
        "n_candidates": parsed.n_candidates,
        "max_chars": parsed.max_chars,
    }
    source, content, blob, error = _image_content(parsed.image, blob, base, limits, sources)
    # The existing caption is context for the refiner, so it is part of the request (absent: keys as before).
    request = fingerprint({**fields, "original": parsed.caption})
    cache_key = digest("caption", content, request)
    # The row's origin makes every row its own record; content + request make a changed file a new key.
    key = digest("caption", raw.origin, fingerprint({"id": parsed.id}), content, request)
    return CaptionItem(
        key=key,
        cache_key=cache_key,
        row=raw.row,
        source=source,
        id=parsed.id,
        original=parsed.caption,
        blob=blob,
        error=error,
        **fields,
    )


def _parse_row(raw: _Raw, label: str) -> tuple[ManifestRow | None, str | None, bytes | None]:
    """The row's fields (None with the problem when they are not valid) and its inline image bytes, if any."""
    problem = raw.problem
    blob = raw.blob
    if not problem and raw.data is not None and isinstance(raw.data.get("image"), (bytes, bytearray)):
        blob = bytes(raw.data["image"])  # inline bytes (a Parquet binary column)
        raw.data = {**raw.data, "image": f"{label}#row{raw.row}"}
    if problem:
        return None, problem, blob
    try:
        return ManifestRow.model_validate(raw.data), problem, blob
    except ValidationError as exc:
        return None, "; ".join(_column_problem(e) for e in exc.errors()), blob
    except RecursionError:
        return None, "nested too deeply", blob


def _image_content(
    image: str, blob: bytes | None, base: Path, limits: ImageLimits, sources: SourceOptions | None
) -> tuple[str, str, bytes | None, dict[str, str] | None]:
    """Where the row's image is, its content id (a hash where the bytes are at hand: remote images are read
    here), the bytes, and the input error of a remote image that cannot be read."""
    if blob is not None:
        content = content_hash(blob) if len(blob) <= limits.max_bytes else f"oversize:{len(blob)}:{image}"
        return image, content, blob, None
    if is_remote(image):
        try:
            blob = fetch_bytes(image, limits.max_bytes, sources or SourceOptions())
        except CaptionAgentError as exc:
            error = {"type": type(exc).__name__, "stage": "input", "message": str(exc)}
            return image, f"unreadable:{type(exc).__name__}:{image}", None, error
        return image, content_hash(blob), blob, None
    source = image if os.path.isabs(image) else os.path.abspath(base / image)
    return source, content_id(source, limits), None, None


def iter_items(
    manifest: Path | str | Sequence[Path | str],
    *,
    style: str,
    locale: str,
    limits: ImageLimits | None = None,
    chunk: int = 64,
    threads: int = 4,
    sources: SourceOptions | None = None,
) -> Iterator[CaptionItem]:
    """Items of ``manifest`` (one input or several) in row order; image hashing (and fetching of remote images)
    runs on ``threads`` threads (I/O bound)."""
    inputs = [manifest] if isinstance(manifest, (str, Path)) else list(manifest)
    limits = limits or ImageLimits()
    first = Path(str(inputs[0])) if inputs else Path(".")
    base = first if first.is_dir() else first.parent
    label = first.name
    rows = read_inputs(inputs, sources or SourceOptions(), limits)
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="manifest-hash") as pool:
        for group in chunked(rows, chunk):
            yield from pool.map(lambda r: _to_item(r, base, label, style, locale, limits, sources), group)
