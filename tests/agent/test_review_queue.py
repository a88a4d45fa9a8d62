"""Results that need a person land in the configured review queue, once each."""

import json

import pytest
import yaml

pytestmark = pytest.mark.slow


def test_low_confidence_results_are_queued_once(tmp_path, lite_drafter, embedder, images_dir):
    from agent import AgentConfig, CaptionAgent
    from policies.schema import default_policy_path

    policy = yaml.safe_load(default_policy_path().read_text(encoding="utf-8"))
    policy["rules"]["confidence"]["threshold"] = 0.99  # everything the lite drafter writes is "unsure"
    policy_file = tmp_path / "strict.yaml"
    policy_file.write_text(yaml.safe_dump(policy), encoding="utf-8")
    queue = tmp_path / "review.jsonl"
    agent = CaptionAgent(AgentConfig.load(refiner={"backend": "none"},
                                          policy={"file": policy_file, "review_queue": queue}))
    agent.__dict__["drafter"] = lite_drafter
    images = [images_dir / "chelsea.jpg", images_dir / "coffee.jpg"]
    first = agent.caption_batch(images)
    agent.caption_batch(images)  # the same items again: not queued twice
    assert [r.status for r in first] == ["review", "review"]
    lines = [json.loads(line) for line in queue.read_text(encoding="utf-8").splitlines()]
    assert len(lines) == 2 and all(item["reasons"] and item["draft"] for item in lines)
    assert any("cat" in (item["draft"] or "").lower() for item in lines)
