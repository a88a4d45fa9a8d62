"""Held review items over the repository's real photos, queued the way the pipeline queues them (for the review
desk's tests and benchmark): locales, styles, rules, face and text boxes vary so that filters have something to do."""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path
from typing import Any

PHOTOS = ("chelsea.jpg", "coffee.jpg", "astronaut.jpg", "rocket.jpg", "flower.jpg", "motorcycle.jpg")
CAPTIONS = {
    "en-US": "A {what} seen up close in bright daylight outdoors.",
    "de-DE": "Eine Nahaufnahme des Motivs bei hellem Tageslicht im Freien.",
}


@lru_cache(maxsize=32)
def _photo(path: Path) -> tuple[str, int, int]:
    from PIL import Image

    with Image.open(path) as image:
        return hashlib.sha256(path.read_bytes()).hexdigest(), image.size[0], image.size[1]


def held_result(n: int, images_dir: Path, rule: str | None = None, locale: str | None = None, **extra: Any) -> Any:
    """The n-th held result: photo, locale and rule cycle; every 5th is held for PII, every 7th shows a face."""
    from caption_agent.schemas import CaptionResult, ImageInfo, PolicyDecision, Provenance

    photo = images_dir / PHOTOS[n % len(PHOTOS)]
    sha, width, height = _photo(photo)
    locale = locale or ("de-DE" if n % 3 == 2 else "en-US")
    rule = rule or ("pii" if n % 5 == 4 else "confidence")
    what = photo.stem.replace("_", " ")
    decisions = [PolicyDecision(rule=rule, action="review", reason=f"{rule}: held for a person (item {n})")]
    if n % 7 == 0:
        box = [round(v, 2) for v in (width * 0.3, height * 0.2, width * 0.6, height * 0.6)] + [0.98]
        details = {"faces": 1, "face_boxes": [box]}
        decisions.insert(0, PolicyDecision(rule="image_safety", action="allow", reason="1 face", details=details))
    # Every 7th also has a line of text read in it (OCR), in the same pixels as the face.
    text_box = [round(v, 2) for v in (width * 0.1, height * 0.75, width * 0.5, height * 0.85)] + [0.93]
    info = ImageInfo(
        source=str(photo), sha256=sha, width=width, height=height, format="JPEG", faces=1 if n % 7 == 0 else None,
        text_boxes=[text_box] if n % 7 == 0 else None,
    )  # fmt: skip
    refined_by = ("template", "draft")[n % 2]
    return CaptionResult(
        key=f"item-{n:05d}",
        status="review",
        text=extra.pop("text", CAPTIONS["de-DE"] if locale == "de-DE" else CAPTIONS["en-US"].format(what=what)),
        style=extra.pop("style", ("alt_text", "social", "editorial")[n % 3]),
        locale=locale,
        image=info,
        draft=f"a {what}",
        confidence=round(0.2 + (n % 10) / 20, 2),
        decision="review",
        decisions=decisions,
        provenance=extra.pop("provenance", Provenance(drafter="lite", refiner="template", refined_by=refined_by)),
        **extra,
    )


def queue_held(queue: Path, images_dir: Path, count: int, start: int = 0, **kwargs: Any) -> list[str]:
    """Queue ``count`` held results; their review ids in queue order."""
    from caption_agent.policies.review import ReviewQueue

    q = ReviewQueue(queue)
    return [q.add(held_result(n, images_dir, **kwargs)) for n in range(start, start + count)]
