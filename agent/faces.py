"""Find faces on the working copy with MTCNN (P-, R- and O-net cascade), offline and on CPU.

The weights come from the installed facenet-pytorch wheel (``facenet_pytorch/data/{p,r,o}net.pt``, MIT); the
package itself is never imported (it imports torchvision, which does not load beside the CPU torch build here),
so the three small networks are rebuilt below with the same layer names and their state dicts loaded into them.
By default they run on onnxruntime: exported once into the model cache (checked against torch there), so a
detector built later imports no torch. The image pyramid and the crops are numpy (summed-area tables), the same
for both runtimes. Only boxes and scores leave this module: no crops, landmarks or embeddings.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from caption_agent.errors import MissingExtraError

if TYPE_CHECKING:
    import numpy as np
    import torch
    from PIL.Image import Image

Runtime = Literal["onnx", "torch"]
_NETS = ("pnet", "rnet", "onet")

__all__ = ["FIX", "Face", "FaceDetector", "detector", "weights_dir"]

EXTRA = "safety"
FIX = f"pip install 'caption-agent[{EXTRA}]'"
# Its metadata pins an old torch, so it is not in the extra itself: the setup step adds it without dependencies.
PURPOSE = (
    "Face detection (MTCNN; scripts/bootstrap.sh installs it with the safety extra, or run "
    "`pip install --no-deps facenet-pytorch==2.6.0`)"
)
# facenet-pytorch's defaults, from the MTCNN paper: per-stage score thresholds and the pyramid step.
STAGE_THRESHOLDS = (0.6, 0.7)
PYRAMID_FACTOR = 0.709


@dataclass(frozen=True)
class Face:
    """A face box in working-copy pixels and the O-net score (0..1)."""

    x0: float
    y0: float
    x1: float
    y1: float
    score: float

    @property
    def height(self) -> float:
        return self.y1 - self.y0

    def as_list(self) -> list[float]:
        """[x0, y0, x1, y1, score]: integer pixels, score to two decimals (what screening records)."""
        return [round(self.x0), round(self.y0), round(self.x1), round(self.y1), round(self.score, 2)]


def weights_dir() -> Path:
    """The folder holding pnet.pt, rnet.pt and onet.pt in the installed facenet-pytorch wheel.

    Found without importing the package (its ``__init__`` needs torchvision)."""
    spec = find_spec("facenet_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise MissingExtraError("facenet-pytorch", EXTRA, PURPOSE)
    folder = Path(next(iter(spec.submodule_search_locations))) / "data"
    if not all((folder / f"{name}.pt").is_file() for name in ("pnet", "rnet", "onet")):
        raise MissingExtraError("facenet-pytorch", EXTRA, PURPOSE)
    return folder


def _networks() -> tuple[Any, Any, Any]:
    """P-, R- and O-net with facenet-pytorch's layer names, so its state dicts load unchanged."""
    from torch import nn

    class PNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1, self.prelu1 = nn.Conv2d(3, 10, 3), nn.PReLU(10)
            self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
            self.conv2, self.prelu2 = nn.Conv2d(10, 16, 3), nn.PReLU(16)
            self.conv3, self.prelu3 = nn.Conv2d(16, 32, 3), nn.PReLU(32)
            self.conv4_1, self.conv4_2 = nn.Conv2d(32, 2, 1), nn.Conv2d(32, 4, 1)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            x = self.pool1(self.prelu1(self.conv1(x)))
            x = self.prelu3(self.conv3(self.prelu2(self.conv2(x))))
            return self.conv4_2(x), self.conv4_1(x).softmax(dim=1)

    class RNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1, self.prelu1 = nn.Conv2d(3, 28, 3), nn.PReLU(28)
            self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
            self.conv2, self.prelu2 = nn.Conv2d(28, 48, 3), nn.PReLU(48)
            self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
            self.conv3, self.prelu3 = nn.Conv2d(48, 64, 2), nn.PReLU(64)
            self.dense4, self.prelu4 = nn.Linear(576, 128), nn.PReLU(128)
            self.dense5_1, self.dense5_2 = nn.Linear(128, 2), nn.Linear(128, 4)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            x = self.pool1(self.prelu1(self.conv1(x)))
            x = self.pool2(self.prelu2(self.conv2(x)))
            x = self.prelu3(self.conv3(x))
            # The weights were converted from Caffe: flatten in (w, h, c) order.
            x = self.prelu4(self.dense4(x.permute(0, 3, 2, 1).reshape(x.shape[0], -1)))
            return self.dense5_2(x), self.dense5_1(x).softmax(dim=1)

    class ONet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1, self.prelu1 = nn.Conv2d(3, 32, 3), nn.PReLU(32)
            self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
            self.conv2, self.prelu2 = nn.Conv2d(32, 64, 3), nn.PReLU(64)
            self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
            self.conv3, self.prelu3 = nn.Conv2d(64, 64, 3), nn.PReLU(64)
            self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
            self.conv4, self.prelu4 = nn.Conv2d(64, 128, 2), nn.PReLU(128)
            self.dense5, self.prelu5 = nn.Linear(1152, 256), nn.PReLU(256)
            # dense6_3 (landmarks) is loaded so the state dict matches, and never used.
            self.dense6_1, self.dense6_2, self.dense6_3 = nn.Linear(256, 2), nn.Linear(256, 4), nn.Linear(256, 10)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            x = self.pool1(self.prelu1(self.conv1(x)))
            x = self.pool2(self.prelu2(self.conv2(x)))
            x = self.pool3(self.prelu3(self.conv3(x)))
            x = self.prelu4(self.conv4(x))
            x = self.prelu5(self.dense5(x.permute(0, 3, 2, 1).reshape(x.shape[0], -1)))
            return self.dense6_2(x), self.dense6_1(x).softmax(dim=1)

    return PNet(), RNet(), ONet()


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, by_min: bool = False) -> np.ndarray:
    """Greedy non-maximum suppression; indices kept, best first. ``by_min`` divides the overlap by the smaller
    box (MTCNN's last stage) instead of the union.

    The overlaps of a block of boxes with every later box are computed at once (numpy, without the GIL), and the
    greedy pass reads them: the same picks, from the same float32 arithmetic, as suppressing box by box, at a
    fraction of the Python work (P-net keeps hundreds of boxes per photo)."""
    import numpy as np

    if len(boxes) == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.argsort(-scores, kind="stable")
    x0, y0, x1, y1 = (boxes[order, k] for k in range(4))
    area = (x1 - x0 + 1) * (y1 - y0 + 1)
    n = len(order)
    alive = np.ones(n, dtype=bool)
    keep = []
    for start in range(0, n, _NMS_BLOCK):
        rows = slice(start, min(n, start + _NMS_BLOCK))
        # overlap[r, c]: row box start + r against column box start + c (the later ones matter).
        a0, a1, b0, b1 = x0[rows, None], x1[rows, None], y0[rows, None], y1[rows, None]
        w = np.maximum(0.0, np.minimum(a1, x1[None, start:]) - np.maximum(a0, x0[None, start:]) + 1)
        h = np.maximum(0.0, np.minimum(b1, y1[None, start:]) - np.maximum(b0, y0[None, start:]) + 1)
        inter = w * h
        mine, theirs = area[rows, None], area[None, start:]
        overlap = inter / (np.minimum(mine, theirs) if by_min else mine + theirs - inter)
        stays = overlap <= threshold  # as box by box: a NaN overlap (empty boxes) suppresses
        for r in range(rows.stop - start):
            i = start + r
            if alive[i]:
                keep.append(i)
                alive[i + 1 :] &= stays[r, r + 1 :]
    return order[np.asarray(keep, dtype=np.int64)]


_NMS_BLOCK = 256  # rows of overlaps computed at once: 256 x (boxes left) float32, about 1.5 MB at P-net's worst


def _square(boxes: np.ndarray) -> np.ndarray:
    """Grow each box to a square around its centre (the next net sees square crops)."""
    import numpy as np

    out = boxes.copy()
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    side = np.maximum(w, h)
    out[:, 0] = boxes[:, 0] + w * 0.5 - side * 0.5
    out[:, 1] = boxes[:, 1] + h * 0.5 - side * 0.5
    out[:, 2] = out[:, 0] + side
    out[:, 3] = out[:, 1] + side
    return out


def _regress(boxes: np.ndarray, reg: np.ndarray) -> np.ndarray:
    out = boxes.copy()
    w = boxes[:, 2] - boxes[:, 0] + 1
    h = boxes[:, 3] - boxes[:, 1] + 1
    out[:, 0] += reg[:, 0] * w
    out[:, 1] += reg[:, 1] * h
    out[:, 2] += reg[:, 2] * w
    out[:, 3] += reg[:, 3] * h
    return out


def _integral(rgb: np.ndarray) -> np.ndarray:
    """Summed-area table with a zero first row and column: (H+1, W+1, 3)."""
    import numpy as np

    # Pixels are integers, so integer sums are exact; int32 (half the memory traffic of float64) while they fit.
    dtype = np.int32 if rgb.shape[0] * rgb.shape[1] * 255 < 2**31 else np.int64
    sums = np.zeros((rgb.shape[0] + 1, rgb.shape[1] + 1, 3), dtype=dtype)
    np.cumsum(rgb, axis=0, dtype=dtype, out=sums[1:, 1:])
    np.cumsum(sums[1:, 1:], axis=1, out=sums[1:, 1:])
    return sums


def _area_crops(
    sums: np.ndarray, x0: np.ndarray, y0: np.ndarray, x1: np.ndarray, y1: np.ndarray, size: int | tuple[int, int]
) -> np.ndarray:
    """Crops [y0:y1, x0:x1] resized to ``size`` (side, or (rows, cols)) by area averaging, all boxes at once:
    (N, rows, cols, 3).

    The same bins as torch's ``interpolate(mode="area")`` (adaptive average pooling), read from the
    summed-area table instead of one resize call per box (hundreds of boxes per image)."""
    import numpy as np

    rows, cols = (size, size) if isinstance(size, int) else size

    def edges(start: np.ndarray, stop: np.ndarray, out: int) -> tuple[np.ndarray, np.ndarray]:
        steps = np.arange(out + 1)
        n = (stop - start)[:, None]
        lo = start[:, None] + (steps[None, :-1] * n) // out
        hi = start[:, None] + -((-(steps[None, 1:]) * n) // out)  # ceil division
        return lo, hi

    r0, r1 = edges(y0, y1, rows)
    c0, c1 = edges(x0, x1, cols)
    total = (
        sums[r1[:, :, None], c1[:, None, :]]
        - sums[r0[:, :, None], c1[:, None, :]]
        - sums[r1[:, :, None], c0[:, None, :]]
        + sums[r0[:, :, None], c0[:, None, :]]
    )
    area = ((r1 - r0)[:, :, None] * (c1 - c0)[:, None, :])[..., None]
    crops: np.ndarray = (total / area).astype(np.float32)
    return crops


def _normalise(pixels: np.ndarray) -> np.ndarray:
    """(N, H, W, 3) pixel values -> the networks' NCHW input in [-1, 1]."""
    import numpy as np

    return np.ascontiguousarray(((pixels - 127.5) * 0.0078125).astype(np.float32).transpose(0, 3, 1, 2))


def torch_networks(folder: Path) -> dict[str, Any]:
    """P-, R- and O-net on torch with the wheel's state dicts, by name, in eval mode (MissingExtraError naming the
    ``lite`` extra without torch: the default install runs the ONNX exports and has none)."""
    from caption_agent._extras import require

    torch = require("torch", "lite", "Face detection on torch (or its one-time ONNX export)")

    nets = dict(zip(_NETS, _networks()))
    for name, net in nets.items():
        net.load_state_dict(torch.load(folder / f"{name}.pt", map_location="cpu", weights_only=True))
        net.eval()
    return nets


def onnx_entry(folder: Path | None = None) -> Path:
    """The model-cache entry holding pnet/rnet/onet.onnx, exported under torch once and checked against it."""
    from caption_agent.onnx_models import export_once, export_torch

    folder = folder or weights_dir()

    def build(tmp: Path) -> None:
        import numpy as np

        rng = np.random.default_rng(0)
        nets = torch_networks(folder)
        spatial = {"input": {0: "n", 2: "h", 3: "w"}, "reg": {0: "n", 2: "h", 3: "w"}, "prob": {0: "n", 2: "h", 3: "w"}}
        flat = {"input": {0: "n"}, "reg": {0: "n"}, "prob": {0: "n"}}
        shapes = {"pnet": [(1, 3, 37, 52), (1, 3, 12, 15)], "rnet": [(5, 3, 24, 24), (1, 3, 24, 24)]}
        shapes["onet"] = [(5, 3, 48, 48), (1, 3, 48, 48)]
        for name in _NETS:
            probes = [rng.uniform(-1, 1, shape).astype(np.float32) for shape in shapes[name]]
            export_torch(nets[name], probes, tmp / f"{name}.onnx", ["reg", "prob"], spatial if name == "pnet" else flat)

    return export_once("mtcnn", [folder / f"{name}.pt" for name in _NETS], build)


class FaceDetector:
    """MTCNN on CPU, its networks on onnxruntime (default) or torch. Thread-safe: the networks are read-only after
    loading (onnxruntime sessions allow concurrent runs; torch runs under ``inference_mode``)."""

    def __init__(self, weights: Path | None = None, runtime: Runtime = "onnx", threads: int = 1) -> None:
        folder = weights or weights_dir()
        self.runtime = runtime
        if runtime == "onnx":
            from caption_agent.onnx_models import session

            entry = onnx_entry(folder)
            # One intra-op thread by default: the screen stage runs one image per core at once (faster than every
            # core on one image; benchmarks/bench_default_path.py measures both).
            self._sessions = {name: session(entry / f"{name}.onnx", threads) for name in _NETS}
        else:
            self._torch = torch_networks(folder)

    def _net(self, name: str, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(box regression, face/non-face probabilities) of network ``name`` for a float32 NCHW batch."""
        if self.runtime == "onnx":
            reg, prob = self._sessions[name].run(["reg", "prob"], {"input": batch})
            return reg, prob
        import torch

        with torch.inference_mode():
            reg_t, prob_t = self._torch[name](torch.from_numpy(batch))
        return reg_t.numpy(), prob_t.numpy()

    def detect(self, image: Image, min_face_px: int = 20, score: float = 0.7) -> list[Face]:
        """Faces at least ``min_face_px`` wide in ``image`` (a PIL image, the working copy) whose final
        (O-net) score is at least ``score``, best first."""
        import numpy as np

        # uint8 (the summed-area table stays in integers); convert() would copy even an RGB image
        rgb = np.asarray(image if image.mode == "RGB" else image.convert("RGB"))
        sums = _integral(rgb)
        boxes = self._propose(sums, max(12, int(min_face_px)))
        boxes = self._refine(sums, boxes, "rnet", 24, STAGE_THRESHOLDS[1], square=True)
        boxes = self._refine(sums, boxes, "onet", 48, score, square=False)
        if len(boxes):
            boxes = boxes[nms(boxes[:, :4], boxes[:, 4], 0.7, by_min=True)]
        h, w = rgb.shape[:2]
        return [
            Face(float(max(0.0, b[0])), float(max(0.0, b[1])), float(min(w, b[2])), float(min(h, b[3])), float(b[4]))
            for b in boxes
        ]

    def _propose(self, sums: np.ndarray, min_face_px: int) -> np.ndarray:
        """P-net over an image pyramid: 12 px windows at stride 2, scaled so a ``min_face_px`` face fills one."""
        import numpy as np

        h, w = sums.shape[0] - 1, sums.shape[1] - 1
        scale = 12.0 / min_face_px
        side = min(h, w) * scale
        found = []
        zero, full_w, full_h = np.zeros(1, np.int64), np.array([w]), np.array([h])
        while side >= 12:
            level = _area_crops(sums, zero, zero, full_w, full_h, (int(h * scale + 1), int(w * scale + 1)))
            reg, prob = self._net("pnet", _normalise(level))
            prob_np, reg_np = prob[0, 1], reg[0]
            ys, xs = np.nonzero(prob_np >= STAGE_THRESHOLDS[0])
            if len(ys):
                cells = np.stack([xs, ys], axis=1).astype(np.float32)
                q0 = np.floor((2 * cells + 1) / scale)
                q1 = np.floor((2 * cells + 12) / scale)
                level_boxes = np.concatenate([q0, q1, prob_np[ys, xs][:, None], reg_np[:, ys, xs].T], axis=1)
                found.append(level_boxes[nms(level_boxes[:, :4], level_boxes[:, 4], 0.5)])
            scale *= PYRAMID_FACTOR
            side *= PYRAMID_FACTOR
        if not found:
            return np.zeros((0, 5), dtype=np.float32)
        boxes = np.concatenate(found)
        boxes = boxes[nms(boxes[:, :4], boxes[:, 4], 0.7)]
        # P-net's regression is relative to its 12 px window (no +1, as facenet-pytorch does it).
        bw, bh = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
        refined = np.stack(
            [
                boxes[:, 0] + boxes[:, 5] * bw,
                boxes[:, 1] + boxes[:, 6] * bh,
                boxes[:, 2] + boxes[:, 7] * bw,
                boxes[:, 3] + boxes[:, 8] * bh,
                boxes[:, 4],
            ],
            axis=1,
        )
        return _square(refined)

    def _refine(
        self, sums: np.ndarray, boxes: np.ndarray, net: str, size: int, threshold: float, square: bool
    ) -> np.ndarray:
        """Score each box's crop (resized to ``size``) with ``net``; keep those above ``threshold``, regressed."""
        import numpy as np

        if len(boxes) == 0:
            return boxes
        h, w = sums.shape[0] - 1, sums.shape[1] - 1
        ints = np.trunc(boxes[:, :4]).astype(np.int64)
        x0, y0 = np.maximum(ints[:, 0], 1), np.maximum(ints[:, 1], 1)
        x1, y1 = np.minimum(ints[:, 2], w), np.minimum(ints[:, 3], h)
        valid = (y1 > y0 - 1) & (x1 > x0 - 1)
        boxes, x0, y0, x1, y1 = boxes[valid], x0[valid], y0[valid], x1[valid], y1[valid]
        if len(boxes) == 0:
            return boxes
        crops = _area_crops(sums, x0 - 1, y0 - 1, x1, y1, size)
        reg_np, prob = self._net(net, _normalise(crops))
        score = prob[:, 1]
        keep = score > threshold
        boxes = np.concatenate([boxes[keep, :4], score[keep, None]], axis=1)
        reg_np = reg_np[keep]
        if not square:
            return _regress(boxes, reg_np)
        pick = nms(boxes[:, :4], boxes[:, 4], 0.7)
        return _square(_regress(boxes[pick], reg_np[pick]))


_DETECTOR: FaceDetector | None = None
_DETECTOR_LOCK = threading.Lock()


def detector() -> FaceDetector:
    """One MTCNN per process (about 2 MB of weights, loaded on first use).

    Raises MissingExtraError naming ``pip install 'caption-agent[safety]'`` when facenet-pytorch is absent."""
    global _DETECTOR
    with _DETECTOR_LOCK:
        if _DETECTOR is None:
            _DETECTOR = FaceDetector()
        return _DETECTOR
