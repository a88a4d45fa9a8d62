"""What the review desk shows of one queue item: reasons in a reviewer's words (the rule's detail apart), the
photo's face and text boxes in its own coordinates, caption and draft for the word diff, facts with their sources, where
the image came from, and the text an edit starts from."""

from __future__ import annotations

from pathlib import PurePath
from typing import Any


def item_view(item: dict[str, Any], history: list[dict[str, Any]]) -> dict[str, Any]:
    from caption_agent.locales import language_name
    from caption_agent.policies.review_text import best_edit_text, reviewer_reasons

    result = item.get("result") or {}
    prov = result.get("provenance") or {}
    used = set(result.get("facts_used") or [])
    start, hint = best_edit_text(item)
    locale = str(result.get("locale") or "")
    try:
        language = language_name(locale) if locale else ""
    except Exception:  # noqa: BLE001 - an odd locale in an old record still shows the item
        language = locale
    return {
        "review_id": item["review_id"],
        "key": item.get("key") or "",
        "queued_at": item.get("queued_at") or "",
        "audit": bool(item.get("audit")),
        "source": source_label(item),
        "style": result.get("style", ""),
        "locale": locale,
        "language": language,
        "confidence": result.get("confidence"),
        "drafter": prov.get("drafter", ""),
        "refiner": prov.get("refined_by") or prov.get("refiner", ""),
        "text": item.get("text") or "",
        "draft": item.get("draft") or "",
        "edit_start": start,
        "edit_hint": hint,
        "reasons": reviewer_reasons(item),
        "facts": [
            {
                "id": f.get("id", ""),
                "text": f.get("text", ""),
                "used": f.get("id") in used,
                "source": f"catalog product {f.get('sku', '?')}, field {f.get('field', '?')}"
                + (f" (relevance {f['score']:.2f})" if isinstance(f.get("score"), (int, float)) else ""),
            }
            for f in result.get("facts") or []
        ],
        "boxes": boxes(result),
        "image_text": str(result.get("image_text") or ""),
        "decisions": [
            {"rule": d.get("rule", ""), "action": d.get("action", ""), "reason": d.get("reason", "")}
            for d in result.get("decisions") or []
            if d.get("action") != "allow"
        ],
        "verdict": item.get("verdict"),
        "claim": item.get("claim"),
        "history": history,
    }


def boxes(result: dict[str, Any]) -> dict[str, Any]:
    """Face and text boxes with the width and height of the image they were found on (the working copy), so the
    page can draw them over a thumbnail of any size. ``screened`` False: no face detector looked; ``text_read``
    False: no text reader ran."""
    info = result.get("image") or {}
    screen = next(
        (d.get("details") or {} for d in result.get("decisions") or [] if d.get("rule") == "image_safety"), None
    )
    # The rules look at the bounded working copy; older records name only the original size.
    width = info.get("working_width") or info.get("width") or 0
    height = info.get("working_height") or info.get("height") or 0
    return {
        "width": width,
        "height": height,
        "screened": screen is not None,
        "faces_counted": (screen or {}).get("faces") is not None,
        "faces": _scored_boxes((screen or {}).get("face_boxes")),
        "text_read": info.get("text_boxes") is not None,
        "texts": _scored_boxes(info.get("text_boxes")),
    }


def _scored_boxes(found: Any) -> list[dict[str, Any]]:
    """``[[x0, y0, x1, y1, score?]]`` as the page draws them; anything else is left out."""
    return [
        {"box": [float(v) for v in b[:4]], "score": float(b[4]) if len(b) > 4 else None}
        for b in found or []
        if isinstance(b, (list, tuple)) and len(b) >= 4
    ]


def source_label(item: dict[str, Any]) -> str:
    """Where the image came from, in words: a file name (and folder), or the upload's key and size."""
    info = (item.get("result") or {}).get("image") or {}
    source = str(info.get("source") or item.get("image") or "")
    size = f"{info['width']}×{info['height']} px" if info.get("width") and info.get("height") else ""
    fmt = str(info.get("format") or "")
    if source and source != "<bytes>":
        path = PurePath(source)
        parts = [path.name, f"in {path.parent}" if str(path.parent) not in ("", ".") else "", fmt, size]
    else:
        key = item.get("key") or ""
        parts = [f"uploaded image {key!s}".strip(), fmt, size, f"sha256 {str(info.get('sha256', ''))[:12]}"]
    return " · ".join(p for p in parts if p)
