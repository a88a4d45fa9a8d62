"""Where a job's images live: local paths, object-store URIs (fsspec), allow-listed http(s) URLs, inline bytes.

Every reader is bounded: at most ``limits.max_bytes + 1`` bytes of one image are read, whatever the store
holds. Object stores are reached through fsspec (``s3://`` with s3fs, ``gs://`` with gcsfs, ``az://`` with
adlfs); ``storage_options`` go to fsspec as they are (endpoint, credentials), so a job can point at any
S3-compatible server. http(s) URLs go through the service's SSRF-checked fetcher, and only when an allow-list is
configured: a manifest is untrusted input, and without a list nothing on the network is fetched.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Iterator

from caption_agent._extras import require
from caption_agent.errors import CaptionAgentError

REMOTE_SCHEMES = ("s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "memory")
URL_SCHEMES = ("http", "https")
_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")
_BRACE = re.compile(r"\{([^{}]*)\}")
_MAX_EXPANSION = 1_000_000


class SourceError(CaptionAgentError):
    """An image or shard that cannot be read from where a row says it is."""

    fix = (
        "check the path or URI; for object stores pass --storage-options (endpoint, credentials); for http(s) "
        "images pass --url-allow HOST."
    )


@dataclass(frozen=True)
class SourceOptions:
    """How a job reaches remote images (plain data: it travels to Ray workers as JSON-able fields)."""

    storage_options: dict[str, Any] = field(default_factory=dict)
    url_allowlist: tuple[str, ...] = ()
    allow_private_urls: bool = False
    timeout_s: float = 30.0


def scheme(location: str) -> str:
    """The URI scheme of ``location`` ("" for a plain path)."""
    m = _SCHEME.match(location)
    return m.group(1).lower() if m else ""


def is_remote(location: str) -> bool:
    """True for object-store URIs and http(s) URLs: their bytes are read by the job, not by the image loader."""
    return scheme(location) in REMOTE_SCHEMES + URL_SCHEMES


def expand_braces(pattern: str) -> list[str]:
    """``shard-{000..003}.tar`` -> four names; ``{a,b}`` -> two (webdataset/img2dataset brace patterns)."""
    m = _BRACE.search(pattern)
    if m is None:
        return [pattern]
    body = m.group(1)
    rng = re.fullmatch(r"(\d+)\.\.(\d+)", body)
    if rng:
        lo, hi = rng.group(1), rng.group(2)
        width = len(lo) if lo.startswith("0") else 0
        if int(hi) - int(lo) >= _MAX_EXPANSION:
            raise SourceError(f"brace pattern {pattern!r} expands to too many names.")
        parts = [str(n).zfill(width) for n in range(int(lo), int(hi) + 1)]
    else:
        parts = body.split(",")
    head, tail = pattern[: m.start()], pattern[m.end() :]
    return [name for part in parts for name in expand_braces(head + part + tail)]


def open_binary(location: str, options: SourceOptions) -> BinaryIO:
    """A streaming binary file object for a local path or an object-store URI (never a URL)."""
    if scheme(location) in URL_SCHEMES:
        raise SourceError(f"{location[:200]!r}: shards and manifests are read from paths or object stores only.")
    if not scheme(location) or scheme(location) == "file":
        return open(location.removeprefix("file://"), "rb")  # noqa: SIM115 - the caller closes it
    fsspec = require("fsspec", "datasets", f"Reading {scheme(location)}:// inputs")
    try:
        return fsspec.open(location, "rb", **options.storage_options).open()
    except (ImportError, ValueError) as exc:  # e.g. s3fs/gcsfs/adlfs missing: fsspec says which
        raise SourceError(
            f"cannot open {location[:200]!r}: {exc}", fix="pip install 'caption-agent[datasets]'."
        ) from exc


def _read_bounded(fh: BinaryIO, max_bytes: int, label: str) -> bytes:
    data = fh.read(max_bytes + 1)
    if len(data) > max_bytes:
        from caption_agent.errors import ImageTooLargeError

        raise ImageTooLargeError(f"{label[:200]} is over the limit of {max_bytes} bytes.")
    return bytes(data)


def fetch_bytes(location: str, max_bytes: int, options: SourceOptions) -> bytes:
    """The bytes of a remote image (object store or allow-listed URL), at most ``max_bytes``."""
    if scheme(location) in URL_SCHEMES:
        return _fetch_url(location, max_bytes, options)
    try:
        with open_binary(location, options) as fh:
            return _read_bounded(fh, max_bytes, location)
    except CaptionAgentError:
        raise
    except (OSError, ValueError) as exc:
        raise SourceError(f"cannot read {location[:200]!r}: {type(exc).__name__}: {exc}") from exc


def _fetch_url(url: str, max_bytes: int, options: SourceOptions) -> bytes:
    if not options.url_allowlist:
        raise SourceError(
            f"image {url[:200]!r} is a URL and no allow-list is configured; URLs are fetched only from listed hosts.",
            fix="pass --url-allow HOST (repeatable) for the hosts your manifest may name.",
        )
    from caption_agent.urls import fetch_image

    coro = fetch_image(
        url,
        allowlist=list(options.url_allowlist),
        allow_private=options.allow_private_urls,
        max_bytes=max_bytes,
        timeout_s=options.timeout_s,
    )
    return bytes(asyncio.run(coro))


def content_hash(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def iter_inputs(inputs: list[str]) -> Iterator[str]:
    """Each input name with its brace patterns expanded, in order."""
    for name in inputs:
        yield from expand_braces(str(name))
