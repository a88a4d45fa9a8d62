"""A batch runs with the screen ahead of the later stages (one item per core, chunks ahead) and gives the results
it would give stage by stage over the whole batch; an item still fails alone, a crash still surfaces, and no
thread outlives the batch. The consensus ranker scores a batch in one embedder call, with the same ranking."""

from __future__ import annotations

import random
import threading
from typing import Any

import pytest
from fakes import FakeDrafter, FakeRanker
from PIL import Image

import caption_agent.stages as stages_module
from caption_agent import AgentConfig, CaptionAgent
from caption_agent.ranking import ConsensusRanker
from caption_agent.schemas import Candidate
from caption_agent.state import CaptionState


def _photos(folder, images_dir, n: int) -> list[str]:
    """``n`` distinct JPEGs (random crops of the bundled photos), an unreadable file and a missing path among them."""
    rng = random.Random(3)
    sources = [Image.open(p).convert("RGB") for p in sorted(images_dir.glob("*.jpg"))]
    paths = []
    for i in range(n):
        src = sources[i % len(sources)]
        w, h = src.size
        cw, ch = int(w * rng.uniform(0.5, 1.0)), int(h * rng.uniform(0.5, 1.0))
        x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
        path = folder / f"photo-{i:03d}.jpg"
        src.crop((x, y, x + cw, y + ch)).save(path, "JPEG", quality=85)
        paths.append(str(path))
    (folder / "broken.jpg").write_bytes(b"not a jpeg at all")
    paths.insert(7, str(folder / "broken.jpg"))
    paths.insert(23, str(folder / "missing.jpg"))
    return paths


def _records(results: list[Any]) -> list[dict[str, Any]]:
    out = []
    for r in results:
        record = r.model_dump(mode="json")
        record["provenance"].pop("timings_ms")
        out.append(record)
    return out


def test_a_batch_with_the_screen_ahead_gives_the_stage_by_stage_results(
    tmp_path, images_dir, catalog_dir, lite_drafter, embedder, monkeypatch
):
    """The real default path (lite drafter, MTCNN and NudeNet screen, consensus ranker, catalog, template refiner,
    policy) over 3 chunks: every field of every result but the timings is the same as stage by stage."""
    monkeypatch.setenv("OMP_NUM_THREADS", "2")  # two cores' worth of threads, whatever the machine
    paths = _photos(tmp_path, images_dir, 2 * stages_module.CHUNK + 5)
    config = AgentConfig.load(retrieval={"catalog_dir": catalog_dir})
    agent = CaptionAgent(config, drafter=lite_drafter, embedder=embedder)
    ahead = agent.caption_batch(paths)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # one core: each stage over the whole batch in turn, one thread
    whole = agent.caption_batch(paths)
    assert _records(ahead) == _records(whole)
    assert len(ahead) == len(paths)
    # every input answered, in order (the two bad ones have no image to name)
    sources = [r.image.source if r.image else None for r in ahead]
    assert sources == [None if i in (7, 23) else p for i, p in enumerate(paths)]
    assert [r.status for r in ahead].count("error") == 2
    assert {ahead[7].error.stage, ahead[23].error.stage} == {"input"}
    assert {r.status for i, r in enumerate(ahead) if i not in (7, 23)} <= {"ok", "review"}
    agent.close()


class _Crashes:
    """A leading stage that crashes on one item (a bug, not a per-item error it could record)."""

    name = "screen"
    runs_ahead = True

    def __init__(self, bad: int) -> None:
        self.bad, self.seen = bad, []

    def run(self, states: list[CaptionState]) -> None:
        for state in states:
            if state.request is not None and state.request.image == f"item-{self.bad}":
                raise RuntimeError("screen bug")
            self.seen.append(state)


class _Records:
    name = "rest"

    def __init__(self) -> None:
        self.chunks: list[int] = []

    def run(self, states: list[CaptionState]) -> None:
        self.chunks.append(len(states))


def _states(n: int) -> list[CaptionState]:
    agent = CaptionAgent(AgentConfig.load(), drafter=FakeDrafter(["a cup"]), ranker=FakeRanker())
    return [CaptionState.of(agent.make_request(f"item-{i}")) for i in range(n)]


@pytest.fixture
def two_cores(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "2")


def test_a_crash_ahead_surfaces_and_no_thread_outlives_the_batch(two_cores):
    before = set(threading.enumerate())
    chunk = stages_module.CHUNK
    rest = _Records()
    stages = stages_module.Stages([_Crashes(bad=2 * chunk + 1), rest])
    with pytest.raises(RuntimeError, match="screen bug"):
        stages.run(_states(4 * chunk))
    assert rest.chunks == [chunk, chunk]  # the chunks before the crash went on; none after it
    assert set(threading.enumerate()) <= before


def test_later_stages_take_whole_chunks_and_a_stage_that_does_not_say_never_runs_ahead(two_cores, monkeypatch):
    chunk = stages_module.CHUNK
    lead, rest = _Crashes(bad=-1), _Records()
    stages_module.Stages([lead, rest]).run(_states(2 * chunk + 3))
    assert rest.chunks == [chunk, chunk, 3] and len(lead.seen) == 2 * chunk + 3

    class Plain(_Records):  # no runs_ahead attribute: the batch runs stage by stage
        pass

    first, second = Plain(), _Records()
    stages_module.Stages([first, second]).run(_states(2 * chunk + 3))
    assert first.chunks == second.chunks == [2 * chunk + 3]

    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # one core (a Ray actor's share): nothing to overlap
    lead, rest = _Crashes(bad=-1), _Records()
    stages_module.Stages([lead, rest]).run(_states(2 * chunk + 3))
    assert rest.chunks == [2 * chunk + 3]


def test_the_consensus_ranker_ranks_a_batch_as_it_ranks_each_image(embedder):
    ranker = ConsensusRanker(embedder)
    groups = [
        [Candidate(text=t, drafter="lite", score=s) for t, s in zip(texts, (0.9, 0.5, 0.2))]
        for texts in (
            ["A white cup of coffee on a saucer.", "A cup on a table.", "A red rocket on a launch pad."],
            [],
            ["A single tabby cat."],
            ["A rocket lifting off.", "A space rocket on its pad.", "A cup of espresso."],
        )
    ]
    calls = []
    encode = embedder.encode
    try:
        embedder.encode = lambda texts: calls.append(len(texts)) or encode(texts)  # type: ignore[method-assign]
        together = ranker.rank_many(groups, [None] * len(groups))
    finally:
        del embedder.encode
    assert calls == [6]  # the two groups that need embeddings, in one call
    one_by_one = [ranker.rank(g) for g in groups]
    assert [[c.text for c in r] for r, _ in together] == [[c.text for c in r] for r, _ in one_by_one]
    for (got, conf_got), (want, conf_want) in zip(together, one_by_one):
        assert conf_got == pytest.approx(conf_want, abs=1e-4)
        assert [c.rank_score for c in got] == pytest.approx([c.rank_score for c in want], abs=1e-4)


class _FailsOn(FakeRanker):
    def rank(self, candidates, image=None):
        if any("poison" in c.text for c in candidates):
            raise ValueError("cannot rank poison")
        return super().rank(candidates, image)


def test_a_ranker_failure_fails_only_its_item(images_dir):
    agent = CaptionAgent(AgentConfig.load(), drafter=FakeDrafter(["a cup", "a mug"]), ranker=_FailsOn())
    states = [CaptionState.of(agent.make_request(images_dir / "coffee.jpg")) for _ in range(3)]
    agent.stages.slice("screen", "draft").run(states)
    states[1].draft = states[1].drafted.model_copy(
        update={"candidates": [Candidate(text="poison", drafter="fake", score=1.0)]}
    )
    agent.stages.slice("rank", "rank").run(states)
    assert [s.live for s in states] == [True, False, True]
    assert states[1].done.error is not None and states[1].done.error.stage == "rank"
    assert states[0].ranked and states[2].ranked


def test_the_policy_is_built_once_when_the_screen_first_runs_ahead(images_dir, monkeypatch, two_cores):
    """The leading stages' first item runs before any thread starts, so a lazily built part is built once (Python
    3.12 dropped cached_property's lock)."""
    import caption_agent.policies.backend as backend

    built = []
    real = backend.build_policy
    monkeypatch.setattr(backend, "build_policy", lambda settings: built.append(1) or real(settings))
    agent = CaptionAgent(AgentConfig.load(), drafter=FakeDrafter(["a cup", "a mug"]), ranker=FakeRanker())
    results = agent.caption_batch([images_dir / "coffee.jpg"] * (stages_module.CHUNK + 4))
    assert len(built) == 1 and {r.status for r in results} <= {"ok", "review"}
