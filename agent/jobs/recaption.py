"""Recaptioning: a row's existing caption (KEY.txt, a caption/alt column) is kept beside the new one and judged.

The old caption is untrusted data: it is cleaned of instruction-like text and PII by the policy engine (as catalog
text is) before it is written next to the new caption or kept in its place, and it is never a grounding source.
When a CLIP model is configured (``ranker.clip_model``), each record gets the CLIP-S of both captions against the
image (``scores``), ``keep="better"`` keeps the higher-scoring one, and ``min_clip_s`` marks rows whose kept
caption scores below it as ``filtered`` (still one record per row). Captions of presets with a CLIP token limit
(``dataset_recaption``: 77) are cut to fit, whichever is kept.
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

from caption_agent.clip_tokens import count_clip_tokens, fit_clip_tokens
from caption_agent.images import load_image

log = logging.getLogger("caption_agent.jobs")


class Recaptioner:
    """Adds the original caption, scores and the keep/filter decision to caption records (in place)."""

    def __init__(self, agent: Any, keep: str = "new", min_clip_s: float | None = None) -> None:
        self.agent = agent
        self.keep = keep
        self.min_clip_s = min_clip_s

    def _clip(self) -> Any:
        if not self.agent.config.ranker.clip_model:
            return None
        ranker = self.agent.ranker
        return ranker if ranker.gives_clip_s else None

    def _clean(self, text: str, style: str | None, locale: str | None) -> str:
        """The old caption as the policy engine cleans untrusted catalog text (instructions cut, PII masked);
        "" when no rule could vet it (fail closed)."""
        from caption_agent.policies import ModerationContext
        from caption_agent.prompts import load_preset

        preset = load_preset(style or self.agent.config.default_style, self.agent.config.prompts_dir)
        ctx = ModerationContext(preset=preset, locale=locale or self.agent.config.default_locale, draft="")
        cleaned, _ = self.agent.policy.clean_text(text, "existing caption", ctx)
        return " ".join(cleaned.split())

    def apply(self, items: Sequence[Any], records: list[dict[str, Any]]) -> None:
        clip = self._clip()
        for item, record in zip(items, records):
            if item.original is None:
                continue
            limit = self._clip_limit(record.get("style"))
            if record.get("status") not in ("ok", "review") or not record.get("text"):
                continue  # the original stays beside an error record as it came; nothing to judge
            original = self._clean(item.original, record.get("style"), record.get("locale"))
            record["original"] = original
            new = record["text"]
            if limit:
                new = record["text"] = fit_clip_tokens(new, limit)
            scores: dict[str, Any] = {}
            if clip is not None:
                try:
                    image, _ = load_image(item.blob if item.blob is not None else item.source, self.agent.config.images)
                    s_orig, s_new = (float(x) for x in clip.clip_s([original or " ", new], image))
                    scores = {"clip_s_original": round(s_orig, 4), "clip_s_new": round(s_new, 4)}
                    scores["clip_model"] = clip.model_id
                except Exception as exc:  # noqa: BLE001 - the new caption stands; the scores say why they are missing
                    scores = {"error": f"{type(exc).__name__}: {exc}"[:300]}
            record["scores"] = scores
            kept = "new"
            if self.keep == "better" and original and scores.get("clip_s_original", -1) > scores.get("clip_s_new", 9):
                kept = "original"
                record["text"] = fit_clip_tokens(original, limit) if limit else original
            record["kept"] = kept
            best = scores.get("clip_s_original" if kept == "original" else "clip_s_new")
            if self.min_clip_s is not None and best is not None:
                record["filtered"] = best < self.min_clip_s
            if limit:
                assert count_clip_tokens(record["text"]) <= limit

    def _clip_limit(self, style: str | None) -> int | None:
        if not style:
            return None
        from caption_agent.prompts import load_preset

        try:
            limit: int | None = load_preset(style, self.agent.config.prompts_dir).max_clip_tokens
            return limit
        except Exception:  # noqa: BLE001 - an unknown style already failed its item upstream
            return None
