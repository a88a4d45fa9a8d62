"""A second check before a face becomes a person in the caption.

MTCNN at its own 0.7 threshold fires on person-free photos (rowing boats 0.99, a dog's face 0.94, sliced citrus
fruit 0.81, a butterfly's wing 0.79): one look at one scale of the image pyramid is not enough to state a person.
A face found by ``caption_agent.faces`` is kept only when it survives a second, independent look:

* **the same face again at a canonical scale**: the region around the box (twice its side) is cut out and
  resized so the face is ``LOOK_PX`` wide, and the detector must find a face centred there again;
* **and mirrored**: the same crop flipped left-right must be found as well (faces are near-symmetric, the
  textures that fool one look rarely are);
* the lowest of the three scores (the first look, the canonical look, the mirrored look) must reach
  ``min_score``.

A face that NudeNet's FACE_* classes also box (its own detector, trained apart; the image safety rule has run it
already) is kept on the first look alone. Only the public ``FaceDetector.detect`` is used, so the check works over
whatever runtime the detector uses. Measured by ``benchmarks/bench_faces.py`` (person-free photos and labelled
faces, with 95 % intervals).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from PIL.Image import Image

    from caption_agent.faces import Face

__all__ = ["LOOK_PX", "MIN_SCORE", "FaceVerdict", "confirm", "nudenet_agrees", "second_look"]

# The face's width in the second look: above MTCNN's 48 px last stage, small enough to cost little (~128 px crop).
LOOK_PX = 64
# The lowest of the three looks' scores a face needs; MTCNN's own last-stage threshold is 0.7.
MIN_SCORE = 0.9
# NudeNet face classes and the score they count at (NudeNet's face scores run lower than MTCNN's).
NUDENET_FACES = ("FACE_FEMALE", "FACE_MALE")
NUDENET_SCORE = 0.35

Box = Sequence[float]


class Detector(Protocol):
    def detect(self, image: Image, min_face_px: int = 20, score: float = 0.7) -> list[Face]: ...


@dataclass(frozen=True)
class FaceVerdict:
    """One candidate face: its box [x0, y0, x1, y1, score], whether it is kept, and the looks' scores."""

    box: list[float]
    kept: bool
    look: float
    mirrored: float
    why: str


def _centre_inside(box: Box, other: Box) -> bool:
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return other[0] <= cx <= other[2] and other[1] <= cy <= other[3]


def nudenet_agrees(box: Box, detections: Sequence[dict[str, Any]]) -> bool:
    """Whether a NudeNet FACE_* detection ({class, score, box=[x, y, w, h]}) boxes the same face: each box's
    centre lies inside the other."""
    for d in detections:
        if d.get("class") in NUDENET_FACES and float(d.get("score", 0.0)) >= NUDENET_SCORE:
            x, y, w, h = d["box"]
            other = [x, y, x + w, y + h]
            if _centre_inside(box, other) and _centre_inside(other, box):
                return True
    return False


def second_look(image: Image, box: Box, detector: Detector) -> tuple[float, float]:
    """The detector's best score for a face centred in the box's region, re-cut so the face is ``LOOK_PX``
    wide: (as is, mirrored). 0.0 when nothing is found there."""
    from PIL import Image as PILImage
    from PIL import ImageOps

    x0, y0, x1, y1 = (float(v) for v in box[:4])
    side = max(x1 - x0, y1 - y0, 1.0)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    # Twice the face's side around its centre (PIL pads outside the image with black).
    region = image.crop((round(cx - side), round(cy - side), round(cx + side), round(cy + side)))
    size = 2 * LOOK_PX
    crop = region.convert("RGB").resize((size, size), PILImage.Resampling.BILINEAR)
    scores = []
    for view in (crop, ImageOps.mirror(crop)):
        best = 0.0
        for face in detector.detect(view, min_face_px=int(LOOK_PX * 0.6), score=0.5):
            fx, fy = (face.x0 + face.x1) / 2, (face.y0 + face.y1) / 2
            if abs(fx - LOOK_PX) < LOOK_PX / 2 and abs(fy - LOOK_PX) < LOOK_PX / 2:
                best = max(best, face.score)
        scores.append(round(best, 3))
    return scores[0], scores[1]


def confirm(
    image: Image,
    boxes: Sequence[Box],
    detector: Detector,
    nudenet: Sequence[dict[str, Any]] = (),
    min_score: float = MIN_SCORE,
) -> list[FaceVerdict]:
    """A verdict per candidate box ([x0, y0, x1, y1, score] in ``image`` pixels, as the detector found them)."""
    out = []
    for raw in boxes:
        box = list(raw)
        if nudenet_agrees(box, nudenet):
            out.append(FaceVerdict(box, True, 1.0, 1.0, "NudeNet boxes the same face"))
            continue
        look, mirrored = second_look(image, box, detector)
        worst = min(box[4], look, mirrored)
        kept = worst >= min_score
        why = f"scores first/second/mirrored {box[4]:.2f}/{look:.2f}/{mirrored:.2f}: " + (
            f"all >= {min_score:.2f}" if kept else f"lowest {worst:.2f} < {min_score:.2f}, not stated"
        )
        out.append(FaceVerdict(box, kept, look, mirrored, why))
    return out
