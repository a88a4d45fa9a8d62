"""Helpers shared by the job tests (imported as a module; fixtures live in conftest.py)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from caption_agent.jobs import read_records

EXPECTED_ERRORS = {
    "corrupt": "InvalidImageError",
    "zero-byte": "InvalidImageError",
    "non-image": "InvalidImageError",
    "oversized": "ImageTooLargeError",
    "unknown-sku": "UnknownSkuError",
    "bad-locale": "InvalidLocaleError",
    "missing": "InvalidImageError",
}


def key_counts(out: Path) -> Counter:
    return Counter(r["key"] for r in read_records(out))
