"""Reference-free CLIP-S (Hessel et al., 2021): 2.5 * max(cos(image, caption), 0), by agent.ranking_clip.

CLIP reads at most 77 tokens: longer captions are truncated before scoring, so their tails are not judged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from caption_agent.eval.data import EvalInputError, EvalItem, References


def clip_scores(items: list[EvalItem], refs: References, model: str, images_dir: Path | None = None) -> dict[str, Any]:
    """Mean CLIP-S over the captions whose image can be found, with the model's name and truncation count."""
    from PIL import Image

    from caption_agent.clip_tokens import count_clip_tokens
    from caption_agent.ranking_clip import CLIP_S_WEIGHT, ClipRanker

    ranker = ClipRanker(model)
    per_item: list[dict[str, Any]] = []
    missing = 0
    for item in items:
        if not item.text:
            continue
        path = _image_path(item, refs, images_dir)
        if path is None:
            missing += 1
            continue
        with Image.open(path) as img:
            score = float(ranker.clip_s([item.text], img.convert("RGB"))[0])
        per_item.append(
            {
                "image_id": item.image_id,
                "style": item.style,
                "clip_s": round(score, 4),
                "truncated": count_clip_tokens(item.text) > 77,
            }
        )
    if not per_item:
        raise EvalInputError(
            "CLIP-S found no image to score: results carry no readable image path and the "
            "references' file names do not resolve.",
            fix="pass --images DIR, the folder the references' file_name entries are relative to.",
        )
    return {
        "model": ranker.model_id,
        "w": CLIP_S_WEIGHT,
        "mean": round(sum(r["clip_s"] for r in per_item) / len(per_item), 4),
        "captions": len(per_item),
        "truncated_over_77_tokens": sum(r["truncated"] for r in per_item),
        "images_not_found": missing,
        "per_caption": per_item,
    }


def _image_path(item: EvalItem, refs: References, images_dir: Path | None) -> Path | None:
    candidates = []
    if item.image_id and item.image_id in refs.images:
        candidates.append(refs.image_path(refs.images[item.image_id], images_dir))
    if item.source:
        candidates.append(Path(item.source))
    return next((p for p in candidates if p.is_file()), None)
