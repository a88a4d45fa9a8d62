"""The default path's vision models on onnxruntime against torch: EfficientNet-Lite0 (top-1 identical on the
labelled photos, probabilities within 1e-4) and MTCNN (same number of faces, boxes within 1 px, on every photo of
tests/faces/labels.json). The ONNX files are exported once into the model cache under torch, checked there too."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from caption_agent.errors import MissingExtraError

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
pytest.importorskip("torch")


@pytest.fixture(scope="module")
def labelled() -> list[dict]:
    from bench_faces import load_set

    pytest.importorskip("skimage")  # the LFW grids of the labelled set
    return load_set()


@pytest.fixture(scope="module")
def face_runtimes():
    from caption_agent import faces

    try:
        return faces.FaceDetector(runtime="onnx"), faces.FaceDetector(runtime="torch")
    except MissingExtraError:
        pytest.skip("needs facenet-pytorch (scripts/bootstrap.sh installs it with the safety extra)")


def test_lite0_on_onnxruntime_matches_torch(labelled, images_dir):
    from caption_agent.config import ImageLimits, LiteDrafterSettings
    from caption_agent.drafters.lite import LiteDrafter
    from caption_agent.drafters.lite_model import Lite0
    from caption_agent.images import load_image

    photos = [load_image(p, ImageLimits())[0] for p in sorted(images_dir.glob("*.jpg"))]
    photos += [item["image"] for item in labelled if not item["source"].startswith("examples/")]
    onnx = LiteDrafter(LiteDrafterSettings(runtime="onnx"))
    torch_ = LiteDrafter(LiteDrafterSettings(runtime="torch"))
    assert isinstance(onnx._model, Lite0) and onnx._model.runtime == "onnx"
    got, want = onnx.probabilities(photos), torch_.probabilities(photos)
    assert got.shape == want.shape == (len(photos), 1000)
    assert (got.argmax(axis=1) == want.argmax(axis=1)).all()
    assert float(np.abs(got - want).max()) <= 1e-4
    # The drafts a user sees are the same too.
    for mine, theirs in zip(onnx.classify(photos[:3]), torch_.classify(photos[:3])):
        assert [name for name, _ in mine] == [name for name, _ in theirs]
        assert [p for _, p in mine] == pytest.approx([p for _, p in theirs], abs=1e-4)


def test_mtcnn_on_onnxruntime_matches_torch(labelled, face_runtimes):
    onnx, torch_ = face_runtimes
    counted = 0
    for item in labelled:
        for min_px in (30,):  # the policy's setting
            got = onnx.detect(item["image"], min_face_px=min_px)
            want = torch_.detect(item["image"], min_face_px=min_px)
            assert len(got) == len(want), (item["name"], min_px)
            for a, b in zip(got, want):
                assert max(abs(x - y) for x, y in zip(a.as_list()[:4], b.as_list()[:4])) <= 1, item["name"]
                assert abs(a.score - b.score) <= 1e-4
            counted += len(got)
    assert counted > 50  # the LFW face grid alone holds 100 faces: the comparison is not over empty lists


def test_the_pyramid_resize_is_torch_area_interpolation(images_dir):
    import torch
    import torch.nn.functional as F
    from PIL import Image

    from caption_agent.faces import _area_crops, _integral

    rgb = np.asarray(Image.open(images_dir / "astronaut.jpg").convert("RGB"))
    h, w = rgb.shape[:2]
    for rows, cols in ((int(h * 0.4 + 1), int(w * 0.4 + 1)), (37, 29)):
        level = _area_crops(_integral(rgb), *(np.array([v]) for v in (0, 0, w, h)), (rows, cols))[0]
        img = torch.from_numpy(rgb.astype(np.float32)).permute(2, 0, 1).unsqueeze(0)
        want = F.interpolate(img, size=(rows, cols), mode="area")[0].permute(1, 2, 0).numpy()
        assert level.shape == want.shape and float(np.abs(level - want).max()) < 1e-3


def test_exports_are_cached_and_shared(face_runtimes):
    from caption_agent import faces
    from caption_agent.drafters.lite_model import onnx_entry
    from caption_agent.model_cache import read_stamp
    from caption_agent.onnx_models import session

    for entry, files in ((onnx_entry(), ["model.onnx"]), (faces.onnx_entry(), ["pnet.onnx", "rnet.onnx", "onet.onnx"])):
        stamp = read_stamp(entry)
        assert stamp is not None and stamp["weights"] and all((entry / f).is_file() for f in files)
        # One session per file per process: a second drafter or detector loads nothing again.
        assert session(entry / files[0]) is session(entry / files[0])
