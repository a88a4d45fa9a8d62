"""The onnxruntime embedder: same vectors as torch, no torch at run time, export once under a lock, pins."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from caption_agent.config import RetrievalSettings
from caption_agent.embedders import INT8_SUFFIX, OnnxEmbedder, SentenceTransformerEmbedder, new_embedder
from caption_agent.embedders_onnx import UnsupportedEmbedderError, inspect_st_model
from caption_agent.errors import EmbedderMismatchError
from caption_agent.model_cache import build_once
from caption_agent.retrieval import CatalogStore, ingest_file

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A private model cache for this module (the export is checked here, not reused from the user's cache)."""
    path = tmp_path_factory.mktemp("model-cache")
    old = os.environ.get("CAPTION_AGENT_CACHE_DIR")
    os.environ["CAPTION_AGENT_CACHE_DIR"] = str(path)
    yield path
    if old is None:
        os.environ.pop("CAPTION_AGENT_CACHE_DIR", None)
    else:
        os.environ["CAPTION_AGENT_CACHE_DIR"] = old


@pytest.fixture(scope="module")
def onnx_minilm(cache: Path) -> OnnxEmbedder:
    return OnnxEmbedder()


def _catalog_texts() -> list[str]:
    rows = [json.loads(line) for line in (ROOT / "examples" / "catalog.jsonl").read_text().splitlines() if line]
    return [" ".join(str(v) for v in row.values() if isinstance(v, str)) for row in rows] + ["a cat", ""]


@pytest.mark.slow
def test_fp32_vectors_equal_torch(onnx_minilm: OnnxEmbedder, minilm: Any) -> None:
    texts = _catalog_texts()
    torch_st = minilm if isinstance(minilm, SentenceTransformerEmbedder) else SentenceTransformerEmbedder()
    want = torch_st.encode(texts)
    got = onnx_minilm.encode(texts, batch_size=7)  # odd batches: padding differs per batch, vectors must not
    assert got.shape == want.shape and got.dtype == np.float32
    assert float((got * want).sum(axis=1).min()) >= 1 - 1e-4
    assert onnx_minilm.model_id == torch_st.model_id  # same vectors, same pin


@pytest.mark.slow
def test_runtime_path_imports_neither_torch_nor_sentence_transformers(onnx_minilm: OnnxEmbedder, cache: Path) -> None:
    code = (
        "import sys\n"
        "from caption_agent.embedders import get_embedder\n"
        "e = get_embedder()\n"
        "v = e.encode(['Espresso cup, matte black stoneware'])\n"
        "heavy = [m for m in ('torch', 'sentence_transformers', 'transformers') if m in sys.modules]\n"
        "print(e.name, v.shape, heavy)\n"
    )
    env = {**os.environ, "CAPTION_AGENT_CACHE_DIR": str(cache), "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-P", "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "onnx (1, 384) []"


@pytest.mark.slow
def test_collections_are_shared_by_fp32_runtimes_and_refuse_int8(
    onnx_minilm: OnnxEmbedder, minilm: Any, tmp_path: Path, write_jsonl: Any, small_rows: list[dict[str, Any]]
) -> None:
    torch_st = minilm if isinstance(minilm, SentenceTransformerEmbedder) else SentenceTransformerEmbedder()
    settings = RetrievalSettings(catalog_dir=tmp_path / "store")
    with CatalogStore.open(settings, torch_st, writer=True) as store:
        ingest_file(write_jsonl(small_rows), store)
    # Built with torch, queried with ONNX: same pin, same answers.
    store = CatalogStore.open(settings, onnx_minilm)
    by_torch = store.query(torch_st.encode(["cat bed"])[0], 4)
    by_onnx = store.query(onnx_minilm.encode(["cat bed"])[0], 4)
    assert [m.product.sku for m in by_torch] == [m.product.sku for m in by_onnx]
    assert by_onnx[0].product.sku == "A-2"
    int8 = OnnxEmbedder(int8=True)
    assert int8.model_id.endswith(INT8_SUFFIX)
    with pytest.raises(EmbedderMismatchError, match="int8 and fp32") as err:
        CatalogStore.open(settings, int8)
    assert "embedder_runtime" in str(err.value)
    # An int8 collection reopens with the int8 runtime from its pin alone, and refuses an explicit fp32 runtime.
    int8_settings = settings.model_copy(update={"collection": "int8_products"})
    with CatalogStore.open(int8_settings, int8, writer=True) as store8:
        ingest_file(write_jsonl(small_rows), store8)
    assert CatalogStore.open(int8_settings).embedder.model_id == int8.model_id
    with pytest.raises(EmbedderMismatchError, match="onnx-int8"):
        CatalogStore.open(int8_settings.model_copy(update={"embedder_runtime": "torch"}))


@pytest.mark.slow
def test_another_mean_pooling_model_exports_and_matches(cache: Path, tiny_model_dir: Path) -> None:
    got = OnnxEmbedder(str(tiny_model_dir)).encode(["espresso cup", "cat bed", "a cat"])
    want = SentenceTransformerEmbedder(str(tiny_model_dir)).encode(["espresso cup", "cat bed", "a cat"])
    assert float((got * want).sum(axis=1).min()) >= 1 - 1e-4


def _st_folder(tmp_path: Path, pooling: dict[str, Any], modules: list[str] | None = None) -> Path:
    kinds = modules or ["Transformer", "Pooling", "Normalize"]
    paths = {"Transformer": "", "Pooling": "1_Pooling", "Normalize": "2_Normalize", "Dense": "2_Dense"}
    (tmp_path / "1_Pooling").mkdir(parents=True)
    mods = [
        {"idx": i, "name": str(i), "path": paths[k], "type": f"sentence_transformers.models.{k}"}
        for i, k in enumerate(kinds)
    ]
    (tmp_path / "modules.json").write_text(json.dumps(mods))
    (tmp_path / "1_Pooling" / "config.json").write_text(json.dumps({"word_embedding_dimension": 8, **pooling}))
    return tmp_path


def test_other_architectures_are_refused_clearly(tmp_path: Path) -> None:
    cls = _st_folder(tmp_path / "cls", {"pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False})
    with pytest.raises(UnsupportedEmbedderError, match="mean pooling only") as err:
        inspect_st_model(cls)
    assert "embedder_runtime" in str(err.value)  # the fix names the torch runtime
    dense = _st_folder(tmp_path / "dense", {"pooling_mode_mean_tokens": True}, ["Transformer", "Pooling", "Dense"])
    with pytest.raises(UnsupportedEmbedderError, match="Dense"):
        inspect_st_model(dense)
    with pytest.raises(UnsupportedEmbedderError, match="modules.json"):
        inspect_st_model(tmp_path)
    with pytest.raises(UnsupportedEmbedderError):
        new_embedder(str(cls), runtime="onnx")
    ok = _st_folder(tmp_path / "mean", {"pooling_mode_mean_tokens": True})
    assert inspect_st_model(ok)["dim"] == 8


def test_build_once_builds_one_entry_once_across_concurrent_callers(tmp_path: Path) -> None:
    calls: list[int] = []

    def build(folder: Path) -> None:
        calls.append(1)
        time.sleep(0.3)  # long enough for the other callers to queue on the lock
        (folder / "model.bin").write_text("weights")

    entry, stamp = tmp_path / "entry", {"v": 1}
    threads = [threading.Thread(target=build_once, args=(entry, stamp, build)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert (entry / "model.bin").read_text() == "weights"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".entry.")]  # no temporary folder left
    build_once(entry, {"v": 2}, build)  # another stamp (new source or exporter version) rebuilds
    assert len(calls) == 2


def test_a_failed_build_leaves_no_entry(tmp_path: Path) -> None:
    def broken(folder: Path) -> None:
        (folder / "half.bin").write_text("x")
        raise RuntimeError("export crashed")

    with pytest.raises(RuntimeError):
        build_once(tmp_path / "entry", {"v": 1}, broken)
    assert not (tmp_path / "entry").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["entry.lock"]
