"""Results that need a person land in the configured review queue, once each; a damaged queue never stops
captioning and adding to it does not re-read it."""

import json
import logging
import multiprocessing

import pytest
import yaml

from caption_agent.policies import review
from caption_agent.policies.review import ReviewQueue, queue_item, review_id
from caption_agent.schemas import CaptionResult, ImageInfo


@pytest.mark.slow
def test_low_confidence_results_are_queued_once(tmp_path, lite_drafter, embedder, images_dir):
    from caption_agent import AgentConfig, CaptionAgent
    from caption_agent.policies.schema import default_policy_path

    policy = yaml.safe_load(default_policy_path().read_text(encoding="utf-8"))
    policy["rules"]["confidence"]["threshold"] = 0.99  # everything the lite drafter writes is "unsure"
    policy_file = tmp_path / "strict.yaml"
    policy_file.write_text(yaml.safe_dump(policy), encoding="utf-8")
    queue = tmp_path / "review.jsonl"
    agent = CaptionAgent(
        AgentConfig.load(refiner={"backend": "none"}, policy={"file": policy_file, "review_queue": queue}),
        drafter=lite_drafter,
    )
    images = [images_dir / "chelsea.jpg", images_dir / "coffee.jpg"]
    first = agent.caption_batch(images)
    agent.caption_batch(images)  # the same items again: not queued twice
    assert [r.status for r in first] == ["review", "review"]
    lines = [json.loads(line) for line in queue.read_text(encoding="utf-8").splitlines()]
    assert len(lines) == 2 and all(item["reasons"] and item["draft"] for item in lines)
    assert any("cat" in (item["draft"] or "").lower() for item in lines)


def result(key: str) -> CaptionResult:
    return CaptionResult(
        key=key,
        status="review",
        text="A white espresso cup.",
        style="alt_text",
        locale="en-US",
        image=ImageInfo(source=f"{key}.jpg", sha256=f"{key:0>64}", width=10, height=10),
        draft="a white espresso cup",
        decision="review",
    )


@pytest.fixture
def parsed(monkeypatch):
    """Counts the queue lines the review module parses."""
    calls = []
    real = review._parse

    def counting(raw, path, where):
        calls.append(where)
        return real(raw, path, where)

    monkeypatch.setattr(review, "_parse", counting)
    return calls


def test_malformed_queue_lines_are_skipped_with_a_warning(tmp_path, caplog):
    queue = tmp_path / "queue.jsonl"
    q = ReviewQueue(queue)
    q.add(result("a1"))
    with queue.open("a", encoding="utf-8") as fh:
        # not JSON, an array, no review_id, a blank line, and a torn last line (a writer died mid-line)
        fh.write('not json\n[1, 2]\n{"key": "no id"}\n\n{"review_id": "c0ffee00c0ffee00", "te')
    with caplog.at_level(logging.WARNING, logger="caption_agent.policies.review"):
        assert q.add(result("b2")) == review_id(result("b2"))  # captioning goes on
        assert q.add(result("a1")) == review_id(result("a1"))  # still queued once
        items = list(q.items())
    assert [i["key"] for i in items] == ["a1", "b2"]
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    for where in ("line 2", "line 3", "line 4", "line 6"):  # line 5 is blank: not an error
        assert any(str(queue) in m and f" {where} " in m for m in warned), (where, warned)
    assert queue.read_text(encoding="utf-8").splitlines()[-1].startswith('{"review_id": "' + review_id(result("b2")))


def test_add_looks_up_the_index_instead_of_reading_the_queue(tmp_path, parsed):
    big, small = tmp_path / "big.jsonl", tmp_path / "small.jsonl"
    big.write_text("".join(f'{{"review_id": "{i:016x}", "key": "k{i}"}}\n' for i in range(50_000)))
    small.write_text("".join(f'{{"review_id": "{i:016x}", "key": "k{i}"}}\n' for i in range(10)))
    for path, lines in ((big, 50_000), (small, 10)):
        ReviewQueue(path).add(result("first"))  # no index yet: built from the queue once
        assert len(parsed) == lines
        parsed.clear()
        for key in ("second", "third", "first"):
            ReviewQueue(path).add(result(key))  # a fresh queue object each time, as the pipeline makes one
        assert parsed == [], "add() parsed queue lines"
        assert path.read_text().count(review_id(result("first"))) == 1


def test_the_index_catches_up_or_rebuilds(tmp_path, parsed, caplog):
    queue = tmp_path / "queue.jsonl"
    q = ReviewQueue(queue)
    for key in ("a1", "b2", "c3"):
        q.add(result(key))
    with queue.open("a", encoding="utf-8") as fh:  # a writer that died before indexing, or an older version
        fh.write(json.dumps(queue_item(result("d4"))) + "\n")
    parsed.clear()
    q.add(result("d4"))
    assert len(parsed) == 1, "only the lines the index had not seen are read"
    assert queue.read_text().count(review_id(result("d4"))) == 1

    q.index_path.unlink()  # missing index
    q.add(result("a1"))
    q.index_path.write_bytes(b"this is not a database" * 100)  # damaged index
    with caplog.at_level(logging.WARNING, logger="caption_agent.policies.review"):
        q.add(result("b2"))
    assert "unreadable" in caplog.text
    assert [i["key"] for i in q.items()] == ["a1", "b2", "c3", "d4"]

    # The queue rewritten by hand (a reviewer dropped two lines): the index follows it.
    lines = queue.read_text().splitlines(keepends=True)
    queue.write_text(lines[0] + lines[3])
    assert review_id(result("b2")) not in q and review_id(result("d4")) in q
    q.add(result("b2"))
    assert [i["key"] for i in q.items()] == ["a1", "d4", "b2"]


def _add_many(path: str, worker: int, start) -> None:
    start.wait()
    q = ReviewQueue(path)
    for n in range(50):
        q.add(result(f"shared{n}"))
        q.add(result(f"w{worker}n{n % 10}"))


def test_each_result_is_queued_once_by_concurrent_processes(tmp_path):
    queue = tmp_path / "queue.jsonl"
    ctx = multiprocessing.get_context("fork")
    start = ctx.Barrier(4)
    procs = [ctx.Process(target=_add_many, args=(str(queue), w, start)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0] * 4
    ids = [json.loads(line)["review_id"] for line in queue.read_text(encoding="utf-8").splitlines()]
    assert len(ids) == 50 + 4 * 10 and len(set(ids)) == len(ids)
