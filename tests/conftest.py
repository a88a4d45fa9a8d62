"""Shared fixtures: real bundled models, loaded once per test session; everything offline."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
# Converted weights (ONNX exports, SmolLM2 safetensors) go to a cache inside the checkout, never the user's own;
# it persists between runs so the bundled models are converted once.
os.environ.setdefault("CAPTION_AGENT_CACHE_DIR", str(REPO / ".cache" / "model-cache"))


@pytest.fixture(scope="session", autouse=True)
def _prune_test_model_exports(tmp_path_factory: pytest.TempPathFactory):
    """Tiny models built in pytest's temp folders are exported into the cache too; drop those entries at the end."""
    yield
    from caption_agent.model_cache import prune

    base = tmp_path_factory.getbasetemp().resolve()
    prune(everything=True, only=lambda e: bool(e.source) and Path(str(e.source)).resolve().is_relative_to(base))


@pytest.fixture(scope="session")
def images_dir() -> Path:
    return EXAMPLES / "images"


@pytest.fixture(scope="session")
def catalog_file() -> Path:
    return EXAMPLES / "catalog.jsonl"


@pytest.fixture(scope="session")
def lite_drafter():
    from caption_agent.drafters.lite import LiteDrafter

    return LiteDrafter()


@pytest.fixture(scope="session")
def local_refiner():
    from caption_agent.config import LocalRefinerSettings
    from caption_agent.refiners.local import LocalRefiner

    return LocalRefiner(LocalRefinerSettings(temperature=0))


@pytest.fixture(scope="session")
def embedder():
    from caption_agent.embedders import get_embedder

    return get_embedder()


@pytest.fixture(scope="session")
def catalog_dir(tmp_path_factory, catalog_file, embedder) -> Path:
    """The sample catalog ingested once into an embedded Chroma folder."""
    from caption_agent.config import RetrievalSettings
    from caption_agent.retrieval import CatalogStore, ingest_file

    path = tmp_path_factory.mktemp("catalog")
    with CatalogStore.open(RetrievalSettings(catalog_dir=path), embedder, writer=True) as store:
        ingest_file(catalog_file, store)
    return path


@pytest.fixture(scope="session")
def offline_agent(catalog_dir, lite_drafter, local_refiner, embedder):
    """A CaptionAgent on the embedded defaults, sharing the session's loaded models."""
    from caption_agent import AgentConfig, CaptionAgent

    agent = CaptionAgent(
        AgentConfig.load(retrieval={"catalog_dir": catalog_dir}, refiner={"local": {"temperature": 0}}),
        drafter=lite_drafter,
        refiner=local_refiner,
        embedder=embedder,
    )
    yield agent
    agent.close()
