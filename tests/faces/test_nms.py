"""MTCNN's non-maximum suppression reads a block of overlaps at once; it must pick exactly the boxes that
suppressing box by box picks (the specification below), ties, empty and inverted boxes included."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from caption_agent.faces import nms


def box_by_box(boxes: np.ndarray, scores: np.ndarray, threshold: float, by_min: bool) -> np.ndarray:
    x0, y0, x1, y1 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    area = (x1 - x0 + 1) * (y1 - y0 + 1)
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(i)
        w = np.maximum(0.0, np.minimum(x1[i], x1[rest]) - np.maximum(x0[i], x0[rest]) + 1)
        h = np.maximum(0.0, np.minimum(y1[i], y1[rest]) - np.maximum(y0[i], y0[rest]) + 1)
        inter = w * h
        overlap = inter / (np.minimum(area[i], area[rest]) if by_min else area[i] + area[rest] - inter)
        order = rest[overlap <= threshold]
    return np.asarray(keep, dtype=np.int64)


@pytest.mark.parametrize("seed", range(40))
def test_nms_picks_what_box_by_box_suppression_picks(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(600, 1400)) if seed % 8 == 0 else int(rng.integers(0, 300))  # past one block, and not
    corner = rng.uniform(0, 400, (n, 2)).astype(np.float32)
    size = rng.uniform(-3, 90, (n, 2)).astype(np.float32)  # a few inverted boxes: their overlaps are NaN
    if seed % 3 == 0:
        size = np.round(size)
    boxes = np.concatenate([corner, corner + size], axis=1)
    scores = rng.uniform(0, 1, n).astype(np.float32)
    if seed % 2 == 0:
        scores = np.round(scores, 1)  # ties: the stable order decides
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # 0/0 on inverted boxes, in both
        for threshold, by_min in ((0.5, False), (0.7, False), (0.7, True)):
            got = nms(boxes, scores, threshold, by_min)
            assert np.array_equal(got, box_by_box(boxes, scores, threshold, by_min))
    assert nms(boxes[:0], scores[:0], 0.5).size == 0
