"""NudeNet's detector (the 320n ONNX model inside the ``nudenet`` wheel) on the project's onnxruntime session.

``nudenet.NudeDetector`` opens its session with onnxruntime's defaults (every core, spinning worker threads) and
post-processes its 2,100 candidate rows one by one in Python. On the 2-core box, under load from other stages,
that session ran 2-5x slower than one whose threads do not spin, and the loop took 20-30 ms per image. This class
runs the same model file with :func:`caption_agent.onnx_models.session` (shared per process) and the same
post-processing done on arrays: the detections are identical (tests/policies/test_nudenet_onnx.py). Batches of
several images did not pay on this CPU (4 images per run cost more per image than one), so images go one by one.
Pre-processing is NudeNet's own (``_read_image``; nudenet is pinned to 3.4.2 in the safety extra).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from caption_agent._extras import require
from caption_agent.onnx_models import session

__all__ = ["NudeNet"]

_MIN_SCORE = 0.2  # NudeNet's own candidate floor and NMS settings (nudenet/nudenet.py, 3.4.2)
_NMS_SCORE, _NMS_IOU = 0.25, 0.45


class NudeNet:
    """``detect(bgr) -> [{class, score, box: [x, y, w, h]}]``, as ``nudenet.NudeDetector.detect`` returns."""

    def __init__(self, threads: int = 1) -> None:
        self._nn = require("nudenet.nudenet", "safety", "The image safety rule", package="nudenet")
        self.labels: list[str] = list(getattr(self._nn, "__labels"))  # a module global (no mangling here)
        # One intra-op thread by default: the screen stage runs one image per core at once (faster than every
        # core on one image; benchmarks/bench_default_path.py measures both).
        self._session = session(Path(str(self._nn.__file__)).with_name("320n.onnx"), threads)
        self._input = self._session.get_inputs()[0].name
        self.size = 320

    def detect(self, bgr: np.ndarray) -> list[dict[str, Any]]:
        """Detections for one 3-channel BGR image (what ``cv2.imread`` gives)."""
        blob, _, _, x_pad, y_pad, width, height = self._nn._read_image(bgr, self.size)
        output = self._session.run(None, {self._input: blob})[0]
        return self._postprocess(output, x_pad, y_pad, width, height)

    def _postprocess(self, output: np.ndarray, x_pad: int, y_pad: int, width: int, height: int) -> list[dict[str, Any]]:
        rows = np.transpose(np.squeeze(output))
        scores = rows[:, 4:]
        best = scores.max(axis=1)
        keep = best >= _MIN_SCORE
        rows, scores, best = rows[keep], scores[keep], best[keep]
        classes = scores.argmax(axis=1)
        x, y, w, h = (rows[:, k] for k in range(4))
        # Centre to corner, model to image pixels (padding included), clipped: NudeNet's arithmetic, in float32.
        x = (x - w / 2) * (width + x_pad) / self.size
        y = (y - h / 2) * (height + y_pad) / self.size
        w = w * (width + x_pad) / self.size
        h = h * (height + y_pad) / self.size
        x = np.clip(x, 0, width)
        y = np.clip(y, 0, height)
        w = np.minimum(w, width - x)
        h = np.minimum(h, height - y)
        boxes = np.stack([x, y, w, h], axis=1).tolist()
        cv2 = require("cv2", "safety", "The image safety rule", package="opencv-python")
        picked = cv2.dnn.NMSBoxes(boxes, best.tolist(), _NMS_SCORE, _NMS_IOU)
        return [
            {"class": self.labels[int(classes[i])], "score": float(best[i]), "box": [int(v) for v in boxes[i]]}
            for i in picked
        ]
