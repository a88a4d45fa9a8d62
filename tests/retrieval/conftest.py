"""Fixtures for the retrieval tests: the real bundled embedder, a tiny sentence-transformers model built
offline, small catalogs, and a real `chroma run` server on a free loopback port."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from caption_agent.config import RetrievalSettings

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_CATALOG = ROOT / "examples" / "catalog.jsonl"

SMALL = [
    {
        "sku": "A-1",
        "title": "Espresso cup",
        "brand": "Hollowell",
        "category": "Cups",
        "attributes": {"color": "matte black", "material": "stoneware"},
        "description": "A small espresso cup.",
    },
    {
        "sku": "A-2",
        "title": "Felt cat bed",
        "brand": "Purrfect",
        "category": "Pets",
        "attributes": {"color": "grey"},
        "description": "A round felt bed for cats.",
    },
    {
        "sku": "A-3",
        "title": "Camera tripod",
        "brand": "Steadyline",
        "category": "Cameras",
        "attributes": {"material": "aluminium"},
        "description": "A tripod with a ball head.",
    },
    {
        "sku": "A-4",
        "title": "Glass vase",
        "brand": "Clearwater",
        "category": "Decor",
        "attributes": {"color": "clear"},
        "description": "A vase for a small bouquet.",
    },
]


@pytest.fixture
def small_rows() -> list[dict[str, Any]]:
    return [dict(r, attributes=dict(r["attributes"])) for r in SMALL]


@pytest.fixture
def write_jsonl(tmp_path: Path) -> Callable[..., Path]:
    """write_jsonl(rows, name="catalog.jsonl") -> path; a str row is written as is (for broken lines)."""

    def write(rows: list[Any], name: str = "catalog.jsonl") -> Path:
        path = tmp_path / name
        path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
        return path

    return write


@pytest.fixture
def settings(tmp_path: Path) -> RetrievalSettings:
    """Settings for an embedded store in a fresh folder."""
    return RetrievalSettings(catalog_dir=tmp_path / "store")


@pytest.fixture(scope="session")
def minilm() -> Any:
    """The bundled all-MiniLM-L6-v2, loaded once per session (the same shared instance the app uses)."""
    from caption_agent.embedders import get_embedder

    return get_embedder(None)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 32-d sentence-transformers model with random weights, saved through the real save/load path."""
    from sentence_transformers import SentenceTransformer, models
    from transformers import BertConfig, BertModel, BertTokenizerFast

    base = tmp_path_factory.mktemp("tiny-bert")
    words = sorted({w.strip(".,").lower() for r in SMALL for w in json.dumps(r).split()} | {"cup", "cat"})
    (base / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]) + "\n")
    tokenizer = BertTokenizerFast(vocab_file=str(base / "vocab.txt"))
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    BertModel(config).save_pretrained(base)
    tokenizer.save_pretrained(base)
    word = models.Transformer(str(base), max_seq_length=128)
    dim = (getattr(word, "get_embedding_dimension", None) or word.get_word_embedding_dimension)()
    model = SentenceTransformer(modules=[word, models.Pooling(dim)], device="cpu")
    out = tmp_path_factory.mktemp("tiny-st")
    model.save(str(out))
    return out


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def chroma_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real `chroma run` on 127.0.0.1:<free port>; yields its URL."""
    exe = Path(sys.executable).with_name("chroma")
    exe_path = str(exe) if exe.exists() else shutil.which("chroma")
    if exe_path is None:
        pytest.fail("the `chroma` script of the chromadb package is not installed")
    data = tmp_path_factory.mktemp("chroma-server")
    port = _free_port()
    log = (data.parent / f"chroma-{port}.log").open("wb")
    proc = subprocess.Popen(
        [exe_path, "run", "--path", str(data), "--host", "127.0.0.1", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "ANONYMIZED_TELEMETRY": "False"},
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"chroma run exited with {proc.returncode}; see {log.name}")
            try:
                with urllib.request.urlopen(f"{url}/api/v2/heartbeat", timeout=1) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"chroma run did not answer within 60 s; see {log.name}")
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
