"""NudeNet on the project's onnxruntime session (caption_agent.nudenet_onnx) gives what nudenet.NudeDetector gives:
the same classes and boxes, scores within float noise, on every photo of tests/faces/labels.json."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

nudenet = pytest.importorskip("nudenet", reason="needs the [safety] extra (pip install 'caption-agent[safety]')")
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))


def test_same_detections_as_nudenet_itself():
    from bench_faces import load_set

    from caption_agent.nudenet_onnx import NudeNet
    from caption_agent.policies.rules import image_safety

    pytest.importorskip("skimage")  # the LFW grids of the labelled set
    theirs, ours = nudenet.NudeDetector(), NudeNet()
    assert image_safety.detector() is image_safety.detector() and isinstance(image_safety.detector(), NudeNet)
    found = 0
    for item in load_set():
        bgr = np.ascontiguousarray(np.asarray(item["image"])[:, :, ::-1])
        want, got = theirs.detect(bgr), ours.detect(bgr)
        assert [(d["class"], d["box"]) for d in got] == [(d["class"], d["box"]) for d in want], item["name"]
        assert [d["score"] for d in got] == pytest.approx([d["score"] for d in want], abs=1e-4)
        found += len(got)
    assert found >= 2  # at least the two portraits' faces: the comparison is not over empty lists
