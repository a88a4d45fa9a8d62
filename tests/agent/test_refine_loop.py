"""The one refine -> moderate -> regenerate -> fallback loop, driven by scripted answers through the real policy
engine: every branch, in the caption pipeline and in the localization job."""

from pathlib import Path

import pytest
import yaml
from fakes import CrashingPolicy, FakeDrafter, FakeRanker, ScriptedRefiner

from caption_agent import AgentConfig, CaptionAgent
from caption_agent.errors import BackendUnavailableError, ModelOutputError
from caption_agent.jobs.localize_job import CaptionRow, LocalizeStage, row_items
from caption_agent.policies import PolicyEngine

DRAFT = "A white espresso cup on a saucer."
GOOD = "A white espresso cup resting on its saucer."
SWEAR = "A shitty espresso cup resting on its saucer."


@pytest.fixture(scope="module")
def engine():
    return PolicyEngine.load(None)


def _agent(answers, engine, **config):
    refiner = ScriptedRefiner(answers)
    agent = CaptionAgent(
        AgentConfig.load(**config), drafter=FakeDrafter([DRAFT]), ranker=FakeRanker(), refiner=refiner, policy=engine
    )
    return agent, refiner


def _caption(agent, images_dir):
    return agent.caption(images_dir / "coffee.jpg", style="alt_text")


def test_a_rule_asks_for_a_regeneration_with_feedback_then_publishes(engine, images_dir):
    agent, refiner = _agent([SWEAR, GOOD], engine)
    result = _caption(agent, images_dir)
    assert result.status == "ok" and result.text == GOOD and result.provenance.refine_attempts == 2
    assert any(d.rule == "blocklist" and d.action == "regenerate" for d in result.decisions)
    assert refiner.jobs[0].feedback == [] and refiner.jobs[1].feedback  # the second prompt says what was wrong


def test_regeneration_exhausted_takes_the_rules_final_action(engine, images_dir):
    agent, _ = _agent([SWEAR, SWEAR], engine)
    result = _caption(agent, images_dir)
    assert result.status == "blocked" and result.text is None and result.provenance.refine_attempts == 2


def test_an_unusable_answer_costs_an_attempt_and_the_next_prompt_says_why(engine, images_dir):
    agent, refiner = _agent([ModelOutputError("refiner output is empty or too short: ''"), GOOD], engine)
    result = _caption(agent, images_dir)
    assert result.status == "ok" and result.text == GOOD
    assert "unusable" in refiner.jobs[1].feedback[0]
    assert any("refine attempt 1" in f for f in result.provenance.fallbacks)


def test_no_usable_answer_falls_back_to_the_moderated_draft(engine, images_dir):
    agent, _ = _agent([ModelOutputError("bad"), ModelOutputError("bad again")], engine)
    result = _caption(agent, images_dir)
    assert result.status == "ok" and result.text == DRAFT
    assert len([f for f in result.provenance.fallbacks if f.startswith("refine attempt")]) == 2


def test_a_refiner_crash_falls_back_without_a_retry(engine, images_dir):
    agent, refiner = _agent([ZeroDivisionError("bug")], engine)
    result = _caption(agent, images_dir)
    assert result.status == "ok" and result.text == DRAFT and len(refiner.jobs) == 1


def test_a_server_down_is_a_retryable_error_not_a_silent_fallback(engine, images_dir):
    agent, _ = _agent([BackendUnavailableError("vLLM at http://127.0.0.1:9 is unreachable")], engine)
    result = agent.caption_batch([images_dir / "coffee.jpg"])[0]
    assert result.status == "error" and result.error.stage == "refine"
    assert result.error.type == "BackendUnavailableError" and result.text is None
    assert result.provenance.policy_version and result.provenance.refiner == "scripted"


def test_a_policy_crash_holds_the_caption_for_review(engine, images_dir):
    agent, _ = _agent([GOOD], CrashingPolicy(engine))
    result = _caption(agent, images_dir)
    assert result.status == "review" and result.text is None
    assert any(d.rule == "engine:moderate" and "rule blew up" in d.reason for d in result.decisions)


def test_injected_stages_are_used_and_not_closed(engine, images_dir):
    drafter = FakeDrafter([DRAFT])
    agent = CaptionAgent(
        AgentConfig.load(refiner={"backend": "none"}), drafter=drafter, ranker=FakeRanker(), policy=engine
    )
    result = _caption(agent, images_dir)
    agent.close()
    assert drafter.calls == 1 and result.text == DRAFT and agent.policy is engine
    assert result.provenance.fallbacks == ["refine: no refiner configured"]


# --- the same loop in the localization job --------------------------------------------------------------------


def _localize(answers, policy, target, source_locale="en-US", text=GOOD):
    row = CaptionRow(text=text, locale=source_locale, style="alt_text", faces=0)
    items = list(row_items(row, [target], style="alt_text", row=0, origin="row:0"))
    refiner = ScriptedRefiner(answers)
    stage = LocalizeStage({"refiner": {"backend": "none"}}, refiner=refiner, policy=policy)
    return stage(items)[0], refiner


def test_localization_without_a_usable_answer_is_a_retryable_error(engine):
    record, refiner = _localize([ModelOutputError("bad"), ModelOutputError("bad")], engine, "de-DE")
    assert record["status"] == "error" and record["error"]["type"] == "ModelOutputError"
    assert record["error"]["stage"] == "refine" and len(refiner.jobs) == 2  # retried once, with feedback
    assert "text" not in record  # the English source is never published as de-DE


def test_localization_regenerates_with_feedback(engine):
    german = "Eine weiße Espressotasse steht auf ihrer Untertasse."
    record, refiner = _localize(["Eine shitty Espressotasse steht auf ihrer Untertasse.", german], engine, "de-DE")
    assert refiner.jobs[1].feedback
    assert record["text"] == german and record["provenance"]["refine_attempts"] == 2


@pytest.fixture(scope="module")
def fallback_policy(tmp_path_factory):
    """The default policy, except that a too-short caption falls back to the draft instead of regenerating."""
    data = yaml.safe_load((Path(__file__).parents[2] / "policies" / "default.yaml").read_text(encoding="utf-8"))
    data["rules"]["style"]["too_short_action"] = "fallback"
    data["rules"]["style"]["action"] = "fallback"  # e.g. a banned opening ("Image of …") asks for the draft
    path = tmp_path_factory.mktemp("policy") / "fallback.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return PolicyEngine.load(path)


def test_a_rejected_translation_goes_to_review_never_to_the_source_text(fallback_policy):
    record, _ = _localize(["Tasse."], fallback_policy, "de-DE")
    assert record["status"] == "review" and record["text"] == "Tasse." and record["text"] != GOOD


def test_a_same_language_target_may_fall_back_to_the_source(fallback_policy):
    record, _ = _localize(["Cup."], fallback_policy, "en-GB")
    assert record["status"] == "ok" and record["text"] == GOOD and record["decision"] == "fallback"


def test_a_policy_crash_in_localization_holds_for_review_not_the_batch(engine):
    record, _ = _localize([GOOD], CrashingPolicy(engine), "en-GB")
    assert record["status"] == "review"
    assert any(d["rule"] == "engine:moderate" for d in record["decisions"])


def test_a_held_answer_keeps_the_policys_fixes(fallback_policy):
    # PII is masked in place, and the banned opening asks for the draft, which cannot stand in for de-DE: the
    # answer a reviewer sees (and may approve as it stands) is the masked one, never the raw answer.
    record, _ = _localize(["Image of eine weiße Tasse, ruf an unter +49 170 1234567."], fallback_policy, "de-DE")
    assert record["status"] == "review" and "1234567" not in record["text"]
    assert any(d["rule"] == "pii" and d["details"].get("pass") == "held" for d in record["decisions"])


def test_a_refiner_that_breaks_its_contract_fails_its_items_only(engine, images_dir):
    class Broken(ScriptedRefiner):
        def refine_many(self, jobs):
            raise RuntimeError("event loop died")

    agent = CaptionAgent(
        AgentConfig.load(), drafter=FakeDrafter([DRAFT]), ranker=FakeRanker(), refiner=Broken([]), policy=engine
    )
    (result,) = agent.caption_batch([images_dir / "coffee.jpg"])
    assert result.status == "ok" and result.text == DRAFT  # the draft, moderated, with the reason recorded
    assert any("event loop died" in f for f in result.provenance.fallbacks)

    class Short(ScriptedRefiner):
        def refine_many(self, jobs):
            return []

    agent = CaptionAgent(
        AgentConfig.load(), drafter=FakeDrafter([DRAFT]), ranker=FakeRanker(), refiner=Short([]), policy=engine
    )
    (result,) = agent.caption_batch([images_dir / "coffee.jpg"])
    assert any("answered 0 of 1" in f for f in result.provenance.fallbacks)


def test_another_script_of_the_same_language_cannot_stand_in(fallback_policy):
    record, _ = _localize(
        ["杯。"], fallback_policy, "zh-CN", source_locale="zh-TW", text="一個白色的咖啡杯放在碟子上。"
    )
    assert record["status"] == "review" and record["text"] != "一個白色的咖啡杯放在碟子上。"
