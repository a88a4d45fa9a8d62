"""The stages as public objects: built in order, injectable, sliced by name; the Ray steps are slices of them."""

from __future__ import annotations

import pickle
import shutil

import pytest
from fakes import FakeDrafter, FakeRanker, ScriptedRefiner

from caption_agent import AgentConfig, CaptionAgent
from caption_agent.jobs.caption_job import CaptionStage
from caption_agent.jobs.manifest import iter_items
from caption_agent.jobs.pipeline_steps import DraftStep, RankStep, RefineStep
from caption_agent.policies import PolicyEngine
from caption_agent.stages import ORDER, build_stages
from caption_agent.state import CaptionState

DRAFT = "A white espresso cup on a saucer."
GOOD = "A white espresso cup resting on its saucer."


@pytest.fixture(scope="module")
def engine():
    return PolicyEngine.load(None)


def test_the_stages_are_built_in_order_and_sliced_by_name(engine):
    ranker = FakeRanker()
    stages = build_stages(AgentConfig.load(), drafter=FakeDrafter([DRAFT]), ranker=ranker, policy=engine)
    assert stages.names == list(ORDER) == ["screen", "draft", "rank", "ground", "refine", "moderate"]
    assert stages.slice("refine", "moderate").names == ["refine", "moderate"]
    assert stages.slice("rank", "rank").names == ["rank"]
    assert next(s for s in stages if s.name == "rank").parts.ranker is ranker  # injected, not built
    with pytest.raises(KeyError, match="no stage 'polish'"):
        stages.slice("polish", "moderate")
    with pytest.raises(TypeError, match="unknown component"):
        build_stages(AgentConfig.load(), rankr=ranker)


def test_running_the_stages_by_hand_gives_the_agents_result(engine, images_dir):
    agent = CaptionAgent(
        AgentConfig.load(),
        drafter=FakeDrafter([DRAFT]),
        ranker=FakeRanker(),
        refiner=ScriptedRefiner([GOOD, GOOD]),
        policy=engine,
    )
    want = agent.caption(images_dir / "coffee.jpg", style="alt_text")
    state = CaptionState.of(agent.make_request(images_dir / "coffee.jpg", style="alt_text"))
    for stage in agent.stages:
        if state.live:
            stage.run([state])
    got = state.done
    assert (got.status, got.text, got.draft) == (want.status, want.text, want.draft) == ("ok", GOOD, DRAFT)
    assert [d.rule for d in got.decisions] == [d.rule for d in want.decisions]


def test_the_ray_steps_give_the_local_runners_records(tmp_path, images_dir):
    """Draft, rank and refine steps in turn, states pickled between them as Ray moves them: same records."""
    for name in ("chelsea.jpg", "rocket.jpg"):
        shutil.copy(images_dir / name, tmp_path / name)
    config = AgentConfig.load(refiner={"backend": "none"}).model_dump(mode="json")
    items = list(iter_items(tmp_path, style="alt_text", locale="en-US"))
    local = CaptionStage(config)(items)
    pairs = [(item, None) for item in items]
    for step in (DraftStep(config), RankStep(config)):
        pairs = [pickle.loads(pickle.dumps((item, state))) for item, state in zip(items, step(pairs))]
    streamed = RefineStep(config)(pairs)
    strip = ("timings_ms",)
    for a, b in zip(local, streamed):
        a["provenance"] = {k: v for k, v in a["provenance"].items() if k not in strip}
        b["provenance"] = {k: v for k, v in b["provenance"].items() if k not in strip}
    assert streamed == local and {r["status"] for r in local} <= {"ok", "review"}


def test_an_agent_sharing_the_models_uses_its_own_refiner_and_leaves_the_first_as_it_was(engine, images_dir):
    """What the review desk's retry does: the same loaded drafter, ranker and policy with another refiner chain; the
    service's agent is never swapped in place, and closing the sharing agent closes nothing it shares."""
    drafter, ranker = FakeDrafter([DRAFT]), FakeRanker()
    agent = CaptionAgent(
        AgentConfig.load(), drafter=drafter, ranker=ranker, refiner=ScriptedRefiner([GOOD]), policy=engine
    )
    first = agent.refiner
    other = agent.sharing(refiner=ScriptedRefiner(["A white espresso cup beside its saucer."]))
    assert (other.drafter, other.ranker, other.policy) == (drafter, ranker, engine)
    got = other.caption(images_dir / "coffee.jpg", style="alt_text")
    assert (got.status, got.text) == ("ok", "A white espresso cup beside its saucer.")
    other.close()
    assert agent.refiner is first and agent.drafter is drafter
    assert agent.caption(images_dir / "coffee.jpg", style="alt_text").text == GOOD
