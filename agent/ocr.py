"""Read text in an image with RapidOCR (PP-OCRv4 ONNX models shipped in its wheel; extra ``ocr``).

The text is untrusted: callers pass it through ``PolicyEngine.prepare_inputs`` before it reaches a prompt.
"""

from __future__ import annotations

import threading
from typing import Any

from caption_agent._extras import require

_ENGINE: Any = None
_LOCK = threading.Lock()


def _engine() -> Any:
    global _ENGINE
    with _LOCK:
        if _ENGINE is None:
            mod = require("rapidocr_onnxruntime", "ocr", "Reading text in images", package="rapidocr-onnxruntime")
            # RapidOCR's default scales the *shorter* side up to 736 px (a 640x240 banner becomes 1963x736,
            # 3 s on 2 cores); capping the longer side at 960 px reads the same text in ~1 s.
            _ENGINE = mod.RapidOCR(det_limit_type="max", det_limit_side_len=960)
        return _ENGINE


def read_lines(image: Any, min_score: float = 0.5) -> list[tuple[str, float]]:
    """(text, score) per detected line, top to bottom then left to right."""
    engine = _engine()
    with _LOCK:  # one ONNX pipeline object; its pre/post-processing keeps state between calls
        result, _ = engine(image.convert("RGB"))
    rows = []
    for box, text, score in result or []:
        if float(score) >= min_score and text.strip():
            top = min(p[1] for p in box)
            left = min(p[0] for p in box)
            rows.append((round(top / 16), left, text.strip(), float(score)))
    rows.sort()
    return [(text, score) for _, _, text, score in rows]


def read_text(image: Any, min_score: float = 0.5) -> str:
    """All text read from a PIL image, one space between lines ('' when there is none)."""
    return " ".join(text for text, _ in read_lines(image, min_score))
