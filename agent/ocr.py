"""Read text in an image with RapidOCR (PP-OCRv4 ONNX models shipped in its wheel; extra ``ocr``).

The text is untrusted: callers pass it through ``PolicyEngine.prepare_inputs`` before it reaches a prompt. Where
it was read is kept as boxes only (no text), so the review desk can outline it on the photo.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from caption_agent._extras import require

# At most this many text boxes are kept per image (a page of small print reads as hundreds of lines).
MAX_TEXT_BOXES = 32

_ENGINE: Any = None
_LOCK = threading.Lock()


@dataclass(frozen=True)
class TextLine:
    """One line read: its text, the recognizer's score and its axis-aligned box in the pixels of the image read."""

    text: str
    score: float
    box: tuple[int, int, int, int]  # x0, y0, x1, y1


def _engine() -> Any:
    global _ENGINE
    with _LOCK:
        if _ENGINE is None:
            mod = require("rapidocr_onnxruntime", "ocr", "Reading text in images", package="rapidocr-onnxruntime")
            # RapidOCR's default scales the *shorter* side up to 736 px (a 640x240 banner becomes 1963x736,
            # 3 s on 2 cores); capping the longer side at 960 px reads the same text in ~1 s.
            _ENGINE = mod.RapidOCR(det_limit_type="max", det_limit_side_len=960)
        return _ENGINE


def read_text_lines(image: Any, min_score: float = 0.5) -> list[TextLine]:
    """The lines detected in a PIL image, top to bottom then left to right, with their boxes."""
    engine = _engine()
    with _LOCK:  # one ONNX pipeline object; its pre/post-processing keeps state between calls
        result, _ = engine(image.convert("RGB"))
    rows = []
    for quad, text, score in result or []:  # quad: four corner points, in the input image's pixels
        if float(score) >= min_score and text.strip():
            xs, ys = [float(p[0]) for p in quad], [float(p[1]) for p in quad]
            box = (round(min(xs)), round(min(ys)), round(max(xs)), round(max(ys)))
            rows.append((round(box[1] / 16), box[0], TextLine(text.strip(), float(score), box)))
    rows.sort(key=lambda row: row[:2])
    return [line for _, _, line in rows]


def text_boxes(lines: list[TextLine], limit: int = MAX_TEXT_BOXES) -> list[list[float]]:
    """``[[x0, y0, x1, y1, score]]`` (int pixels, 2-decimal score) of the ``limit`` largest lines, in reading
    order: the shape screening records face boxes in."""
    area = [(line.box[2] - line.box[0]) * (line.box[3] - line.box[1]) for line in lines]
    kept = set(sorted(range(len(lines)), key=lambda i: -area[i])[:limit])
    return [[*line.box, round(line.score, 2)] for i, line in enumerate(lines) if i in kept]


def read_lines(image: Any, min_score: float = 0.5) -> list[tuple[str, float]]:
    """(text, score) per detected line, top to bottom then left to right."""
    return [(line.text, line.score) for line in read_text_lines(image, min_score)]


def read_text(image: Any, min_score: float = 0.5) -> str:
    """All text read from a PIL image, one space between lines ('' when there is none)."""
    return " ".join(text for text, _ in read_lines(image, min_score))
