"""Image safety: NudeNet's detector runs on the image itself before any text is written.

Exposed-body detections block or send to review; face detections are only counted (the people rule uses the
count). NudeNet's face classes carry a guessed gender: it is never recorded or passed on.
"""

from __future__ import annotations

import threading
from typing import Any, Literal

from pydantic import Field, field_validator

from caption_agent._extras import require
from caption_agent.errors import MissingExtraError
from caption_agent.policies.rules.base import Rule, RuleConfig, RuleResult
from caption_agent.schemas import PolicyDecision

# NudeNet 3.4 (320n) classes, from its source.
NUDENET_CLASSES = frozenset({
    "FEMALE_GENITALIA_COVERED", "FACE_FEMALE", "BUTTOCKS_EXPOSED", "FEMALE_BREAST_EXPOSED",
    "FEMALE_GENITALIA_EXPOSED", "MALE_BREAST_EXPOSED", "ANUS_EXPOSED", "FEET_EXPOSED", "BELLY_COVERED",
    "FEET_COVERED", "ARMPITS_COVERED", "ARMPITS_EXPOSED", "FACE_MALE", "BELLY_EXPOSED", "MALE_GENITALIA_EXPOSED",
    "ANUS_COVERED", "FEMALE_BREAST_COVERED", "BUTTOCKS_COVERED",
})


class ImageSafetyConfig(RuleConfig):
    can_fix = False
    action: Literal["allow", "review", "block"] = Field("block", description="For block_classes hits.")
    on_exhausted: Literal["fallback", "review", "block"] = "block"
    on_draft: Literal["allow", "review", "block"] = "block"
    block_classes: list[str] = Field(default_factory=list, description="NudeNet classes that take `action`.")
    block_score: float = Field(0.6, ge=0, le=1, description="Minimum detector score for block_classes.")
    review_classes: list[str] = Field(default_factory=list, description="Classes sent to review.")
    review_score: float = Field(0.45, ge=0, le=1, description="Minimum score for review_classes (and for "
                                "block_classes under block_score).")
    face_classes: list[str] = Field(default_factory=lambda: ["FACE_FEMALE", "FACE_MALE"])
    face_score: float = Field(0.35, ge=0, le=1, description="Minimum score to count a face.")
    if_unavailable: Literal["allow", "review", "block"] = Field(
        "review", description="When NudeNet is not installed: hold for review by default (never fail open); "
                              "the decision is recorded as skipped either way.")

    @field_validator("block_classes", "review_classes", "face_classes")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        bad = sorted(set(value) - NUDENET_CLASSES)
        if bad:
            raise ValueError(f"unknown NudeNet classes {bad}; known: {sorted(NUDENET_CLASSES)}")
        return value


_DETECTOR: Any = None
_DETECTOR_LOCK = threading.Lock()


def detector() -> Any:
    """One NudeNet detector per process (0.5 s to load, an ONNX session that is safe to share)."""
    global _DETECTOR
    with _DETECTOR_LOCK:
        if _DETECTOR is None:
            nudenet = require("nudenet", "safety", "The image safety rule", package="nudenet")
            _DETECTOR = nudenet.NudeDetector()
        return _DETECTOR


def detect(image: Any) -> list[dict[str, Any]]:
    """NudeNet detections for a PIL image: [{class, score, box}]."""
    import numpy as np

    rgb = np.asarray(image.convert("RGB"))
    # Fed the way NudeNet reads a file (cv2.imread: 3-channel BGR), so scores match detect(path).
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    return detector().detect(bgr)


class ImageSafetyRule(Rule):
    name = "image_safety"
    config_model = ImageSafetyConfig
    stages = frozenset({"image"})
    config: ImageSafetyConfig

    def check_image(self, image, info, ctx) -> RuleResult:
        cfg = self.config
        try:
            found = detect(image)
        except MissingExtraError as exc:
            action = cfg.if_unavailable
            return RuleResult([PolicyDecision(rule=self.name, action=action, reason=f"skipped: nudenet not "
                              f"installed ({exc.fix}); policy says {action}", details={"faces": None,
                                                                                     "skipped": True})], "")
        faces = sum(1 for d in found if d["class"] in cfg.face_classes and d["score"] >= cfg.face_score)
        blocking = [d for d in found if d["class"] in cfg.block_classes and d["score"] >= cfg.block_score]
        reviewing = [d for d in found if (d["class"] in cfg.review_classes or d["class"] in cfg.block_classes)
                     and d["score"] >= cfg.review_score and d not in blocking]
        # Face classes are gendered guesses: keep them out of the record.
        shown = [{"class": d["class"], "score": round(d["score"], 3)} for d in blocking + reviewing
                 if d["class"] not in cfg.face_classes]
        details: dict[str, Any] = {"faces": faces, "detections": shown, "image": info.sha256[:16] if info else None}
        if blocking:
            return self.violation("", None, "unsafe image: " + ", ".join(f"{d['class']} {d['score']:.2f}"
                                                                            for d in blocking), ctx, **details)
        if reviewing:
            return self.violation("", None, "possibly unsafe image: " + ", ".join(
                f"{d['class']} {d['score']:.2f}" for d in reviewing), ctx, wanted="review", **details)
        return self.allow("", f"no unsafe content detected; {faces} face(s)", **details)
