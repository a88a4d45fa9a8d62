"""Every stage is built from a registry by name: the built-in backends by default, a user's by config."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pytest
from pydantic import BaseModel, ConfigDict

from caption_agent.backends import REGISTRIES, check_backends
from caption_agent.config import AgentConfig, PolicySettings, RankerSettings, RetrievalSettings
from caption_agent.embedders import EMBEDDERS, build_embedder
from caption_agent.errors import ConfigError
from caption_agent.policies import POLICY_ENGINES, PolicyEngine, build_policy
from caption_agent.ranking import RANKERS, ConsensusRanker, Ranker, build_ranker
from caption_agent.retrieval import RETRIEVERS, FactRetriever, Retriever, build_retriever
from caption_agent.schemas import Candidate, DraftSubject, GroundingFact, ProductHint


class ShortestSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    target_chars: int = 20


class ShortestRanker(Ranker):
    """A real ranker of another package: prefers drafts whose length is closest to a target."""

    name = "shortest"
    settings_model = ShortestSettings

    def __init__(self, options: ShortestSettings, *, embedder: object, drafter_weight: float) -> None:
        super().__init__(drafter_weight)
        self.embedder = embedder
        self.target = options.target_chars
        self.model_id = f"target={self.target}"

    def scores(self, candidates: Sequence[Candidate], image: object = None) -> np.ndarray:
        return np.array([1.0 / (1.0 + abs(len(c.text) - self.target)) for c in candidates])


class ListRetriever(FactRetriever):
    """A real retriever of another package: facts from a list of products whose title shares a word with the
    draft."""

    name = "list"

    def __init__(self, titles: list[str]) -> None:
        self.titles = titles

    @classmethod
    def from_settings(cls, settings, embedder):
        """Built its own way: no embedder loaded."""
        return cls(settings.options[cls.name]["titles"])

    def facts_many(self, queries, locale=None, k=None, subjects=None):
        out = []
        for draft, _ in queries:
            words = set(draft.lower().split())
            out.append(
                [
                    GroundingFact(id=f"P{i}:title", sku=f"P{i}", field="title", text=title, score=1.0)
                    for i, title in enumerate(self.titles)
                    if words & set(title.lower().split())
                ]
            )
        return out


@pytest.fixture
def registered():
    RANKERS.register("shortest", ShortestRanker)
    RETRIEVERS.register("list", ListRetriever)
    yield
    for registry, name in ((RANKERS, "shortest"), (RETRIEVERS, "list")):
        registry.unregister(name)  # leave the process's registries as they were


@pytest.mark.parametrize(
    ("section", "key", "kind"),
    [
        ("ranker", "backend", "ranker"),
        ("retrieval", "backend", "retriever"),
        ("retrieval", "embedder_backend", "embedder"),
        ("policy", "backend", "policy engine"),
        ("drafter", "backend", "drafter"),
    ],
)
def test_an_unknown_backend_is_refused_before_any_model_loads(section, key, kind):
    config = AgentConfig.load(**{section: {key: "nope"}})
    with pytest.raises(ConfigError) as err:
        check_backends(config)
    assert f"unknown {kind} backend 'nope'" in str(err.value) and "known:" in str(err.value)


def test_defaults_name_todays_backends():
    config = AgentConfig()
    check_backends(config)
    assert config.ranker.selected() == "consensus" and RankerSettings(clip_model="m").selected() == "clip"
    assert (config.retrieval.backend, config.retrieval.embedder_backend) == ("chroma", "sentence-transformers")
    assert config.policy.backend == "rules"
    assert set(REGISTRIES) == {"drafter", "refiner", "ranker", "embedder", "retriever", "policy"}
    assert EMBEDDERS.names() == ["sentence-transformers"] and POLICY_ENGINES.names() == ["rules"]


def test_a_clip_ranker_needs_its_model_and_consensus_refuses_one():
    with pytest.raises(ConfigError, match="needs ranker.clip_model"):
        AgentConfig.load(ranker={"backend": "clip"})
    with pytest.raises(ConfigError, match="does not use it"):
        AgentConfig.load(ranker={"backend": "consensus", "clip_model": "openai/clip-vit-base-patch32"})


@pytest.mark.slow
def test_a_registered_ranker_is_selected_and_configured_from_config(registered, embedder):
    settings = AgentConfig.load(ranker={"backend": "shortest", "options": {"shortest": {"target_chars": 6}}}).ranker
    ranker = build_ranker(settings, lambda: embedder)  # the default from_settings loads it for the backend
    ranked, _ = ranker.rank(
        [Candidate(text="A red bicycle.", drafter="t", score=0.5), Candidate(text="A mug.", drafter="t", score=0.5)]
    )
    assert isinstance(ranker, ShortestRanker) and ranked[0].text == "A mug." and ranker.model_id == "target=6"
    assert ranker.embedder is embedder
    with pytest.raises(ConfigError, match="invalid settings for ranker backend 'shortest'"):
        build_ranker(RankerSettings(backend="shortest", options={"shortest": {"target": 6}}), embedder)


def test_no_catalog_means_no_retriever_and_no_embedder_loaded():
    assert build_retriever(RetrievalSettings(), lambda: pytest.fail("no catalog: no embedder")) is None


def test_a_registered_retriever_is_selected_from_config(registered):
    settings = RetrievalSettings(backend="list", options={"list": {"titles": ["Red bicycle", "Blue kettle"]}})
    retriever = build_retriever(settings, lambda: pytest.fail("this retriever uses no embedder"))
    assert isinstance(retriever, ListRetriever) and retriever.gate is None and retriever.location == ""
    facts = retriever.facts("a red bicycle on a wall", ProductHint())
    assert [f.text for f in facts] == ["Red bicycle"]
    subject = DraftSubject(name="bicycle")
    assert retriever.gated(facts, subject, "a red bicycle") == (facts, None)  # no gate: facts pass untouched
    assert retriever.known_skus(["X"]) == {"X"} and retriever.count() is None


def test_the_built_in_policy_engine_is_the_rules_of_the_policy_file():
    built = build_policy(PolicySettings())
    assert isinstance(built, PolicyEngine) and built.hash == PolicyEngine.load().hash
    with pytest.raises(ConfigError, match="unknown policy engine backend 'strict'"):
        build_policy(PolicySettings(backend="strict"))


@pytest.mark.slow
def test_the_built_in_embedder_ranker_and_retriever_are_todays(catalog_dir, embedder):
    settings = RetrievalSettings(catalog_dir=catalog_dir)
    built = build_embedder(settings)
    assert built is embedder  # one shared instance per model and runtime, as get_embedder gives
    ranker = build_ranker(RankerSettings(drafter_weight=0.3), built)
    assert isinstance(ranker, ConsensusRanker) and ranker.drafter_weight == 0.3 and ranker.model_id == built.model_id
    retriever = build_retriever(settings, built)
    assert isinstance(retriever, Retriever) and retriever.gate is not None and retriever.count() > 0
    assert retriever.location == retriever.store.location
    sku = retriever.store.get([next(retriever.store.iter_skus())])[0].sku
    assert retriever.known_skus([sku, "NOT-A-SKU"]) == {sku}
    retriever.close()
    ungated = build_retriever(settings.model_copy(update={"relevance_gate": False}), built)
    assert ungated is not None and ungated.gate is None
    ungated.close()
