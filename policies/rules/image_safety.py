"""Image safety: NudeNet's detector runs on the image itself before any text is written, then a face detector.

Exposed-body detections (NudeNet) block or send to review. Faces are only counted and boxed, once per image
(no crops, no embeddings); the people rule uses the count. The default face detector is MTCNN
(caption_agent.faces): NudeNet's FACE_FEMALE/FACE_MALE classes missed every face on ordinary photos of people
(benchmarks/bench_faces.py). NudeNet's face classes carry a guessed gender: it is never recorded or passed on.
"""

from __future__ import annotations

import threading
from typing import Any, Literal

from pydantic import Field, field_validator

from caption_agent import faces as face_detection
from caption_agent import faces_check
from caption_agent.errors import MissingExtraError
from caption_agent.policies.rules.base import Rule, RuleConfig, RuleResult
from caption_agent.schemas import PolicyDecision

# NudeNet 3.4 (320n) classes, from its source.
NUDENET_CLASSES = frozenset(
    {
        "FEMALE_GENITALIA_COVERED",
        "FACE_FEMALE",
        "BUTTOCKS_EXPOSED",
        "FEMALE_BREAST_EXPOSED",
        "FEMALE_GENITALIA_EXPOSED",
        "MALE_BREAST_EXPOSED",
        "ANUS_EXPOSED",
        "FEET_EXPOSED",
        "BELLY_COVERED",
        "FEET_COVERED",
        "ARMPITS_COVERED",
        "ARMPITS_EXPOSED",
        "FACE_MALE",
        "BELLY_EXPOSED",
        "MALE_GENITALIA_EXPOSED",
        "ANUS_COVERED",
        "FEMALE_BREAST_COVERED",
        "BUTTOCKS_COVERED",
    }
)


class ImageSafetyConfig(RuleConfig):
    can_fix = False
    action: Literal["allow", "review", "block"] = Field("block", description="For block_classes hits.")
    on_exhausted: Literal["fallback", "review", "block"] = "block"
    on_draft: Literal["allow", "review", "block"] = "block"
    block_classes: list[str] = Field(default_factory=list, description="NudeNet classes that take `action`.")
    block_score: float = Field(0.6, ge=0, le=1, description="Minimum detector score for block_classes.")
    review_classes: list[str] = Field(default_factory=list, description="Classes sent to review.")
    review_score: float = Field(
        0.45, ge=0, le=1, description="Minimum score for review_classes (and for block_classes under block_score)."
    )
    face_detector: Literal["mtcnn", "nudenet"] = Field(
        "mtcnn",
        description="What counts faces: MTCNN (facenet-pytorch weights, the [safety] extra) or NudeNet's "
        "face_classes (misses most faces that are not close portraits).",
    )
    face_classes: list[str] = Field(
        default_factory=lambda: ["FACE_FEMALE", "FACE_MALE"],
        description="NudeNet classes counted as faces when face_detector is nudenet.",
    )
    face_score: float = Field(
        0.7,
        ge=0,
        le=1,
        description=(
            "Minimum score to count a face. mtcnn: the last-stage (O-net) face probability (0.7, MTCNN's own "
            "setting). nudenet: the face class score (0.35 there; its scores run lower)."
        ),
    )
    face_min_px: int = Field(
        30,
        ge=12,
        le=1024,
        description=(
            "Smallest face side, in working-copy pixels, that is searched for (mtcnn) or counted (both). Lower "
            "finds smaller faces and costs time: the image pyramid starts at 12/face_min_px."
        ),
    )
    if_unavailable: Literal["allow", "review", "block"] = Field(
        "review",
        description="When NudeNet is not installed: hold for review by default (never fail open); "
        "the decision is recorded as skipped either way.",
    )

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
    """One NudeNet detector per process (an ONNX session that is safe to share)."""
    global _DETECTOR
    with _DETECTOR_LOCK:
        if _DETECTOR is None:
            from caption_agent.nudenet_onnx import NudeNet

            _DETECTOR = NudeNet()  # NudeNet's model and pre/post-processing on the project's onnxruntime session
        return _DETECTOR


def detect(image: Any) -> list[dict[str, Any]]:
    """NudeNet detections for a PIL image: [{class, score, box}]."""
    import numpy as np

    rgb = np.asarray(image if image.mode == "RGB" else image.convert("RGB"))  # convert() copies even RGB
    # Fed the way NudeNet reads a file (cv2.imread: 3-channel BGR), so scores match detect(path).
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    return detector().detect(bgr)


class ImageSafetyRule(Rule):
    name = "image_safety"
    config_model = ImageSafetyConfig
    order = 10
    required = True
    stages = frozenset({"image"})
    config: ImageSafetyConfig

    def check_image(self, image, info, ctx) -> RuleResult:
        cfg = self.config
        try:
            found = detect(image)
        except MissingExtraError as exc:
            return self._skipped(exc)
        boxes = self._faces(image, found)
        faces = None if boxes is None else len(boxes)
        blocking, reviewing = self._graded(found)
        # Face classes are gendered guesses: keep them out of the record.
        shown = [
            {"class": d["class"], "score": round(d["score"], 3)}
            for d in blocking + reviewing
            if d["class"] not in cfg.face_classes
        ]
        details: dict[str, Any] = {
            "faces": faces,
            "face_boxes": boxes,
            "face_detector": cfg.face_detector,
            "detections": shown,
            "image": info.sha256[:16] if info else None,
        }
        if boxes is None:
            details["faces_skipped"] = f"facenet-pytorch not installed ({face_detection.FIX})"
        if blocking:
            return self.violation(
                "",
                None,
                "unsafe image: " + ", ".join(f"{d['class']} {d['score']:.2f}" for d in blocking),
                ctx,
                **details,
            )
        if reviewing:
            return self.violation(
                "",
                None,
                "possibly unsafe image: " + ", ".join(f"{d['class']} {d['score']:.2f}" for d in reviewing),
                ctx,
                wanted="review",
                **details,
            )
        counted = f"{faces} face(s)" if faces is not None else "faces not counted (face detector not installed)"
        return self.allow("", f"no unsafe content detected; {counted}", **details)

    def _skipped(self, exc: MissingExtraError) -> RuleResult:
        """The detector is not installed: the policy's if_unavailable decides, and the record says it was skipped."""
        action = self.config.if_unavailable
        decision = PolicyDecision(
            rule=self.name,
            action=action,
            reason=f"skipped: nudenet not installed ({exc.fix}); policy says {action}",
            details={"faces": None, "skipped": True},
        )
        return RuleResult([decision], "")

    def _graded(self, found: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The detections that block the image, and those (not blocking) that send it to review."""
        cfg = self.config
        blocking = [d for d in found if d["class"] in cfg.block_classes and d["score"] >= cfg.block_score]
        reviewing = [
            d
            for d in found
            if (d["class"] in cfg.review_classes or d["class"] in cfg.block_classes)
            and d["score"] >= cfg.review_score
            and d not in blocking
        ]
        return blocking, reviewing

    def _faces(self, image: Any, found: list[dict[str, Any]]) -> list[list[float]] | None:
        """Face boxes [[x0, y0, x1, y1, score]] (int pixels, 2-decimal score), or None when the detector is not
        installed: the engine then reports faces as unknown and the people rule applies its if_unavailable."""
        cfg = self.config
        if cfg.face_detector == "nudenet":
            out = []
            for d in found:
                x, y, w, h = d["box"]
                if d["class"] in cfg.face_classes and d["score"] >= cfg.face_score and h >= cfg.face_min_px:
                    out.append([round(x), round(y), round(x + w), round(y + h), round(d["score"], 2)])
            return out
        try:
            model = face_detection.detector()
        except MissingExtraError:
            return None
        candidates = [f.as_list() for f in model.detect(image, min_face_px=cfg.face_min_px, score=cfg.face_score)]
        # A person is stated only for a face that survives a second look (caption_agent.faces_check).
        return [v.box for v in faces_check.confirm(image, candidates, model, found) if v.kept]
