"""Face detection (caption_agent.faces, MTCNN from the facenet-pytorch weights) and the face count screening
records for the people rule. Labels: tests/faces/labels.json (boxes drawn by hand; see benchmarks/bench_faces.py)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from PIL import Image

from caption_agent.errors import MissingExtraError
from caption_agent.schemas import ImageInfo

ROOT = Path(__file__).resolve().parents[2]
LABELS = {item["name"]: item for item in json.loads((ROOT / "tests" / "faces" / "labels.json").read_text())["images"]}

faces = pytest.importorskip("caption_agent.faces")
try:
    faces.weights_dir()
except MissingExtraError:
    pytest.skip(
        "needs facenet-pytorch (scripts/bootstrap.sh installs it with the safety extra)", allow_module_level=True
    )


def bundled(name: str) -> tuple[Image.Image, ImageInfo]:
    image = Image.open(ROOT / LABELS[name]["source"]).convert("RGB")
    info = ImageInfo(
        source=name, sha256=hashlib.sha256(image.tobytes()).hexdigest(), width=image.width, height=image.height
    )
    return image, info


def centre_inside(box: list[float], label: list[float]) -> bool:
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return label[0] <= cx <= label[2] and label[1] <= cy <= label[3]


@pytest.mark.parametrize("name", ["astronaut", "grace_hopper"])
def test_the_labelled_faces_on_the_bundled_portraits_are_found(name):
    image, _ = bundled(name)
    found = faces.detector().detect(image)
    assert len(found) == 1
    (label,) = LABELS[name]["boxes"]
    box = found[0].as_list()
    assert centre_inside(box, label) and centre_inside(label, box)
    assert 0 <= box[0] < box[2] <= image.width and 0 <= box[1] < box[3] <= image.height
    assert found[0].score >= 0.95


@pytest.mark.parametrize("name", ["coffee", "chelsea", "rocket", "motorcycle"])
def test_no_faces_on_object_photos(name):
    image, _ = bundled(name)
    assert faces.detector().detect(image, min_face_px=30) == []  # the policy's defaults


def test_the_detector_is_one_shared_instance():
    assert faces.detector() is faces.detector()


def test_weights_come_from_the_installed_package_not_the_repo():
    folder = faces.weights_dir()
    assert ROOT not in folder.parents or ".venv" in folder.parts
    assert sorted(p.name for p in folder.glob("*.pt")) == ["onet.pt", "pnet.pt", "rnet.pt"]


def test_nms_keeps_the_best_of_overlapping_boxes():
    import numpy as np

    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], dtype=np.float32)
    keep = faces.nms(boxes, np.array([0.5, 0.9, 0.7]), 0.5)
    assert keep.tolist() == [1, 2]


def test_screening_records_the_count_and_boxes_for_the_people_rule(engine):
    image, info = bundled("astronaut")
    outcome, count = engine.screen_image(image, info)
    assert (outcome.action, count) == ("allow", 1)
    details = outcome.decisions[0].details
    assert details["faces"] == 1 and details["face_detector"] == "mtcnn"
    ((x0, y0, x1, y1, score),) = details["face_boxes"]
    assert all(isinstance(v, int) for v in (x0, y0, x1, y1)) and score == round(score, 2)
    assert centre_inside([x0, y0, x1, y1], LABELS["astronaut"]["boxes"][0])
    for name in ("coffee", "chelsea", "rocket"):
        outcome, count = engine.screen_image(*bundled(name))
        assert (outcome.action, count) == ("allow", 0), name


def test_the_policy_score_threshold_changes_the_count(tmp_path):
    from caption_agent.policies import PolicyEngine

    # Searched down to 20 px, MTCNN scores a wheel 0.92 and a headlight 0.73; neither survives the second look
    # (caption_agent.faces_check), so no threshold states a person on this person-free photo.
    image, info = bundled("motorcycle")
    counts = {}
    for score in (0.7, 0.95):
        path = tmp_path / f"s{score}.yaml"
        rule = f"{{face_score: {score}, face_min_px: 20}}"
        path.write_text(f'version: "t"\nextends: default\nrules:\n  image_safety: {rule}\n')
        counts[score] = PolicyEngine.load(path).screen_image(image, info)[1]
    assert counts == {0.7: 0, 0.95: 0}
    assert PolicyEngine.load(None).screen_image(image, info)[1] == 0  # the defaults: from 30 px, at 0.7


def test_the_nudenet_face_classes_remain_selectable(tmp_path):
    pytest.importorskip("nudenet")
    from caption_agent.policies import PolicyEngine

    path = tmp_path / "n.yaml"
    path.write_text(
        'version: "t"\nextends: default\nrules:\n  image_safety: {face_detector: nudenet, face_score: 0.35}\n'
    )
    outcome, count = PolicyEngine.load(path).screen_image(*bundled("grace_hopper"))
    assert count == 1 and "FACE_" not in json.dumps(outcome.decisions[0].details)


def test_without_the_face_detector_faces_are_unknown_and_people_holds_for_review(engine, make_ctx, monkeypatch):
    import caption_agent.policies.rules.image_safety as mod

    def missing() -> None:  # facenet-pytorch absent: what weights_dir raises then
        raise MissingExtraError("facenet-pytorch", "safety", faces.PURPOSE)

    monkeypatch.setattr(mod.face_detection, "detector", missing)
    outcome, count = engine.screen_image(*bundled("astronaut"))
    assert outcome.action == "allow" and count is None  # NudeNet still screened the image
    details = outcome.decisions[0].details
    assert details["faces"] is None and details["face_boxes"] is None
    assert "pip install 'caption-agent[safety]'" in details["faces_skipped"]
    text = "A woman smiles in front of a flag."
    result = engine.review(text, make_ctx(draft=text, faces=count))
    people = [d for d in result.decisions if d.rule == "people"]
    assert people and people[0].action == "review"


def test_a_missing_package_names_the_extra(monkeypatch):
    monkeypatch.setattr(faces, "find_spec", lambda name: None)
    with pytest.raises(MissingExtraError) as exc:
        faces.weights_dir()
    assert exc.value.fix == "pip install 'caption-agent[safety]'" and "no-deps facenet-pytorch" in str(exc.value)
