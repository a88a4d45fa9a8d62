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
