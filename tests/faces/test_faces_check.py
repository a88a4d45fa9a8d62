"""The second check on MTCNN's faces (caption_agent.faces_check): real photos, the real detector."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from caption_agent.faces_check import confirm, nudenet_agrees

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def mtcnn():
    from caption_agent.faces import detector

    return detector()  # the [safety] extra is part of the dev setup: a missing detector fails here


def test_a_real_face_survives_the_second_look(mtcnn):
    image = Image.open(ROOT / "examples" / "images" / "astronaut.jpg").convert("RGB")
    boxes = [f.as_list() for f in mtcnn.detect(image, min_face_px=30, score=0.7)]
    verdicts = confirm(image, boxes, mtcnn)
    assert [v.kept for v in verdicts] == [True]
    assert verdicts[0].look >= 0.9 and verdicts[0].mirrored >= 0.9 and verdicts[0].box == boxes[0]


def test_sliced_citrus_fruit_is_no_person(mtcnn):
    image = Image.open(ROOT / "tests" / "eval" / "trust" / "citrus-fruits.jpg").convert("RGB")
    boxes = [f.as_list() for f in mtcnn.detect(image, min_face_px=30, score=0.7)]
    assert boxes, "MTCNN alone finds a 'face' in the fruit slices"
    verdicts = confirm(image, boxes, mtcnn)
    assert not any(v.kept for v in verdicts)
    assert all("not stated" in v.why for v in verdicts)


def test_nudenet_agreement_needs_the_same_face_and_a_face_class():
    box = [100, 100, 160, 170, 0.8]
    same = {"class": "FACE_FEMALE", "score": 0.5, "box": [95, 98, 70, 75]}
    assert nudenet_agrees(box, [same])
    assert not nudenet_agrees(box, [dict(same, score=0.2)])  # too unsure
    assert not nudenet_agrees(box, [dict(same, **{"class": "FEET_EXPOSED"})])
    assert not nudenet_agrees(box, [dict(same, box=[300, 300, 60, 60])])  # elsewhere
