"""Sentence embeddings on onnxruntime: a sentence-transformers model exported once to ONNX, then run without torch.

Supported: models whose sentence-transformers pipeline is Transformer -> mean Pooling (-> Normalize), the shape of
all-MiniLM-L6-v2 and most ``sentence-transformers/*`` models; anything else (CLS or max pooling, Dense layers,
default prompts) is refused with :class:`UnsupportedEmbedderError`. The export (torch + transformers + onnx) runs
once per model into ``<cache>/onnx/<model>-<hash>`` under a file lock and checks its own vectors against torch's;
the runtime path (:class:`OnnxEncoder`) needs only ``onnxruntime``, ``tokenizers`` and numpy.
"""

from __future__ import annotations

import json
import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from caption_agent._extras import require
from caption_agent.errors import BackendError
from caption_agent.model_cache import build_once, cache_dir, fingerprint
from caption_agent.onnx_models import env_threads, new_session

__all__ = ["EXPORT_VERSION", "OnnxEncoder", "UnsupportedEmbedderError", "export_onnx", "inspect_st_model"]

# Bump when the exported graph or the files written change: old cache entries are then rebuilt.
EXPORT_VERSION = 1
OPSET = 17
FORWARD_BATCH = 16
MAX_COSINE_GAP = 1e-4  # an fp32 export must match torch's vectors this closely, or it is refused
_PROBES = (
    "Stainless steel espresso machine with milk frother, 15 bar pump, 1.5 l water tank.",
    "a cat",
    "Organic cotton crew-neck T-shirt in navy blue, relaxed fit, machine washable at 30 °C. " * 6,
)
_WEIGHTS = ("model.safetensors", "pytorch_model.bin")


class UnsupportedEmbedderError(BackendError):
    fix = (
        "use a sentence-transformers model with plain mean pooling (e.g. all-MiniLM-L6-v2), or set "
        "`retrieval.embedder_runtime = 'torch'` to run this model with sentence-transformers."
    )


def inspect_st_model(folder: Path) -> dict[str, Any]:
    """What the runtime needs to reproduce sentence-transformers' encode() for ``folder``; refuses other layouts."""
    modules_file = folder / "modules.json"
    if not modules_file.is_file():
        raise UnsupportedEmbedderError(f"{str(folder)!r} is not a sentence-transformers folder (no modules.json).")
    modules = json.loads(modules_file.read_text(encoding="utf-8"))
    kinds = [str(m.get("type", "")).rsplit(".", 1)[-1] for m in modules]
    if kinds not in (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"]) or modules[0].get("path"):
        raise UnsupportedEmbedderError(
            f"the ONNX runtime supports Transformer -> mean Pooling (-> Normalize) models; {str(folder)!r} has {kinds}."
        )
    pooling = json.loads((folder / modules[1]["path"] / "config.json").read_text(encoding="utf-8"))
    if "pooling_mode" in pooling:  # sentence-transformers >= 6: {"pooling_mode": "mean", "embedding_dimension": d}
        modes = [str(pooling["pooling_mode"])]
        ok = modes == ["mean"]
    else:  # older: one boolean flag per mode
        modes = sorted(k for k, v in pooling.items() if k.startswith("pooling_mode") and v)
        ok = modes == ["pooling_mode_mean_tokens"]
    if not ok:
        raise UnsupportedEmbedderError(f"the ONNX runtime supports mean pooling only; {str(folder)!r} uses {modes}.")
    st_config = _read_json(folder / "config_sentence_transformers.json")
    if st_config.get("default_prompt_name"):
        raise UnsupportedEmbedderError(f"{str(folder)!r} prepends a default prompt, which the ONNX runtime does not.")
    bert = _read_json(folder / "sentence_bert_config.json")
    config = _read_json(folder / "config.json")
    # sentence-transformers truncates at max_seq_length, else at the tokenizer's and the model's own limits.
    limits = [bert.get("max_seq_length"), _read_json(folder / "tokenizer_config.json").get("model_max_length")]
    limits.append(config.get("max_position_embeddings"))
    known = [int(v) for v in limits if isinstance(v, int | float) and 0 < v < 1_000_000]
    return {
        "dim": int(pooling.get("word_embedding_dimension") or pooling["embedding_dimension"]),
        "max_seq_length": int(bert["max_seq_length"]) if bert.get("max_seq_length") else min(known or [512]),
        "do_lower_case": bool(bert.get("do_lower_case", False)),
        "model_type": str(config.get("model_type", "")),
    }


def export_onnx(folder: Path, model_id: str, *, int8: bool = False) -> Path:
    """The cache entry holding ``model.onnx``, ``tokenizer.json`` and ``spec.json`` for ``folder`` (built once).

    With ``int8`` the entry holds a dynamically quantised copy of the fp32 export (faster, vectors drift)."""
    spec = inspect_st_model(folder)
    weights = [folder / w for w in _WEIGHTS if (folder / w).is_file()]
    if not weights:
        raise UnsupportedEmbedderError(f"no model.safetensors or pytorch_model.bin in {str(folder)!r}.")
    stamp: dict[str, Any] = {
        "export_version": EXPORT_VERSION,
        "opset": OPSET,
        "model_id": model_id,
        "folder": str(folder.resolve()),
        "weights": [[w.name, w.stat().st_size, w.stat().st_mtime_ns] for w in weights],
        "spec": spec,
    }
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", model_id.rstrip("/").rsplit("/", 1)[-1])[:60] or "model"
    root = cache_dir() / "onnx"
    fp32 = build_once(root / f"{slug}-{fingerprint(stamp)}", stamp, lambda tmp: _export(folder, spec, tmp))
    if not int8:
        return fp32
    stamp8 = {**stamp, "quantization": "dynamic-int8"}
    return build_once(root / f"{slug}-{fingerprint(stamp8)}-int8", stamp8, lambda tmp: _quantize(fp32, tmp))


class OnnxEncoder:
    """Tokenise, run the exported encoder, mean-pool over the attention mask, L2-normalise (sentence-transformers'
    computation). Length-sorted batches pad little. Thread-safe: onnxruntime sessions allow concurrent run()."""

    def __init__(self, entry: Path, threads: int | None = None) -> None:
        require("onnxruntime", "lite", "The ONNX embedder")
        tokenizers = require("tokenizers", "lite", "The ONNX embedder")
        self.spec: dict[str, Any] = json.loads((entry / "spec.json").read_text(encoding="utf-8"))
        self.dim = int(self.spec["dim"])
        tok = tokenizers.Tokenizer.from_file(str(entry / "tokenizer.json"))
        tok.no_padding()  # padding is done here, per length-sorted batch
        tok.enable_truncation(max_length=int(self.spec["max_seq_length"]))
        self._tokenizer = tok
        # The thread budget torch would take (OMP_NUM_THREADS, else the usable cores) is spent on whole batches in
        # parallel, one thread each: MiniLM's matrices are small, and on 2 cores one batch per core ran ~1.6x
        # the texts/s of two threads sharing every batch (sessions allow concurrent run() calls).
        self.workers = max(1, threads if threads is not None else env_threads())
        self._session = new_session(entry / "model.onnx", 1)
        self._inputs = {i.name for i in self._session.get_inputs()}

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        items = [t.lower() for t in texts] if self.spec.get("do_lower_case") else list(texts)
        encodings = self._tokenizer.encode_batch(items)
        order = np.argsort([-len(e.ids) for e in encodings], kind="stable")
        # Forward batches of at most 16: less padding per batch and cache-sized matrices (16 ran 1.2x the texts/s of
        # 64 here); ``batch_size`` is the caller's upper bound. Vectors do not depend on it.
        step = max(1, min(batch_size, FORWARD_BATCH))
        batches = [order[lo : lo + step] for lo in range(0, len(order), step)]

        def run(idx: np.ndarray) -> None:
            width = max(len(encodings[i].ids) for i in idx)
            ids = np.zeros((len(idx), width), dtype=np.int64)
            mask = np.zeros((len(idx), width), dtype=np.int64)
            for row, i in enumerate(idx):
                n = len(encodings[i].ids)
                ids[row, :n] = encodings[i].ids
                mask[row, :n] = 1
            feeds = {"input_ids": ids, "attention_mask": mask}
            hidden = self._session.run(["last_hidden_state"], {k: v for k, v in feeds.items() if k in self._inputs})[0]
            out[idx] = mean_pool_normalize(np.asarray(hidden, dtype=np.float32), mask)

        workers = min(self.workers, len(batches))
        if workers == 1:
            for idx in batches:
                run(idx)
        else:
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="onnx-embed") as pool:
                list(pool.map(run, batches))  # rows of ``out`` are disjoint per batch
        return out


def mean_pool_normalize(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mean of the token vectors under ``mask``, then unit length (sentence-transformers' Pooling + Normalize)."""
    weights = mask[..., None].astype(np.float32)
    summed = (hidden * weights).sum(axis=1)
    pooled = summed / np.clip(weights.sum(axis=1), 1e-9, None)
    norms = np.linalg.norm(pooled, axis=1, keepdims=True)
    result: np.ndarray = (pooled / np.clip(norms, 1e-12, None)).astype(np.float32)
    return result


# ---------------------------------------------------------------------------------------------- build time only
def _export(folder: Path, spec: dict[str, Any], dest: Path) -> None:
    """torch.onnx.export of the encoder (input_ids, attention_mask -> last_hidden_state), checked against torch."""
    import inspect
    import warnings

    torch = require("torch", "lite", "Exporting an embedder to ONNX")
    transformers = require("transformers", "lite", "Exporting an embedder to ONNX")
    require("onnx", "lite", "Exporting an embedder to ONNX")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    # Eager attention traces into plain ops for every mask; SDPA's fast paths are picked per traced shape.
    model = transformers.AutoModel.from_pretrained(str(folder), attn_implementation="eager").eval()
    takes_types = "token_type_ids" in inspect.signature(model.forward).parameters

    class Encoder(torch.nn.Module):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.model = model
            # eval() on the wrapper too: export restores the wrapper's mode afterwards, recursively (dropout on).
            self.eval()

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            extra = {"token_type_ids": torch.zeros_like(input_ids)} if takes_types else {}
            return self.model(input_ids=input_ids, attention_mask=attention_mask, **extra).last_hidden_state

    tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder))
    if not getattr(tokenizer, "is_fast", False):
        raise UnsupportedEmbedderError(f"{str(folder)!r} has no fast (tokenizers) tokenizer to run without torch.")
    tokenizer.backend_tokenizer.save(str(dest / "tokenizer.json"))
    (dest / "spec.json").write_text(json.dumps(spec, indent=1), encoding="utf-8")
    sample = tokenizer(["a b c", "d"], return_tensors="pt", padding=True)
    axes = {0: "batch", 1: "tokens"}
    # The tracer warns about shape-dependent branches; the check below is what decides whether the export holds.
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Encoder(),
            (sample["input_ids"], sample["attention_mask"]),
            str(dest / "model.onnx"),
            input_names=["input_ids", "attention_mask"],
            output_names=["last_hidden_state"],
            dynamic_axes={"input_ids": axes, "attention_mask": axes, "last_hidden_state": axes},
            opset_version=OPSET,
            dynamo=False,
        )
    # The check runs the real runtime path (saved tokenizer.json + onnxruntime) against transformers + torch.
    got = OnnxEncoder(dest, threads=1).encode(list(_PROBES))
    batch = tokenizer(
        [p.lower() for p in _PROBES] if spec["do_lower_case"] else list(_PROBES),
        return_tensors="pt",
        padding=True,
        truncation=True,
        max_length=spec["max_seq_length"],
    )
    with torch.inference_mode():
        hidden = Encoder()(batch["input_ids"], batch["attention_mask"]).float().numpy()
    want = mean_pool_normalize(hidden, batch["attention_mask"].numpy())
    gap = float(1.0 - (got * want).sum(axis=1).min())
    if gap > MAX_COSINE_GAP:
        raise UnsupportedEmbedderError(f"the ONNX export of {str(folder)!r} drifted from torch (1 - cos = {gap:.1e}).")


def _quantize(fp32: Path, dest: Path) -> None:
    import shutil

    require("onnx", "lite", "Quantising the ONNX embedder")
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(fp32 / "model.onnx"), str(dest / "model.onnx"), weight_type=QuantType.QInt8)
    for name in ("tokenizer.json", "spec.json"):
        shutil.copy2(fp32 / name, dest / name)


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    return data if isinstance(data, dict) else {}
