"""The review desk's index over a queue and its decisions file: pages, filters, sorting, claims, verdicts,
undo, history, audit samples and the quality numbers; the files stay the record."""

from __future__ import annotations

import json

import pytest

from caption_agent.policies.review import ReviewQueue, audit_sampled, review_id
from caption_agent.policies.review_desk import DeskConflictError, DeskNotFoundError, DeskQuery, ReviewDesk
from caption_agent.policies.review_stats import quality
from caption_agent.policies.review_text import best_edit_text, edit_distance, reason_words, reviewer_reasons
from caption_agent.policies.verdicts import ReviewDecision, read_decisions
from caption_agent.schemas import CaptionResult, HoldReason, ImageInfo, PolicyDecision, Provenance


def held(key: str, rule: str = "confidence", locale: str = "en-US", style: str = "alt_text", **extra) -> CaptionResult:
    return CaptionResult(
        key=key,
        status="review",
        text=extra.pop("text", f"A white espresso cup number {key}."),
        style=style,
        locale=locale,
        image=ImageInfo(source=f"/photos/{key}.jpg", sha256=f"{key:0>64}", width=40, height=30),
        draft="a white espresso cup",
        confidence=extra.pop("confidence", 0.4),
        decision="review",
        decisions=[PolicyDecision(rule=rule, action="review", reason=f"{rule} says hold")],
        provenance=Provenance(drafter="lite", refiner="template", refined_by="template"),
        **extra,
    )


def item(n: int) -> CaptionResult:
    """The fixture queue's n-th result: every 4th held for PII, every 3rd in en-US (the others de-DE)."""
    return held(f"k{n:02d}", rule="pii" if n % 4 == 0 else "confidence", locale="de-DE" if n % 3 else "en-US",
                confidence=n / 20)  # fmt: skip


def rid_of(n: int) -> str:
    return review_id(item(n))


@pytest.fixture
def desk(tmp_path):
    queue = ReviewQueue(tmp_path / "queue.jsonl")
    for n in range(12):
        queue.add(item(n))
    return ReviewDesk(queue.path, tmp_path / "queue.jsonl.decisions.jsonl")


def test_pages_filters_and_sorting(desk):
    page = desk.page(DeskQuery(), offset=0, limit=5)
    assert (page["total"], page["waiting"], len(page["items"])) == (12, 12, 5)
    assert [i["review_id"] for i in page["items"]] == [rid_of(n) for n in range(5)]
    assert desk.page(DeskQuery(), offset=10, limit=5)["items"][-1]["review_id"] == rid_of(11)
    pii = desk.page(DeskQuery(rule="pii"))
    assert pii["total"] == 3 and all(i["safety"] and "pii" in i["tags"] for i in pii["items"])
    assert desk.page(DeskQuery(locale="en-US"))["total"] == 4
    assert desk.page(DeskQuery(drafter="lite", refiner="template", style="alt_text"))["total"] == 12
    assert desk.page(DeskQuery(style="product"))["total"] == 0
    newest = desk.page(DeskQuery(sort="newest"), limit=1)["items"][0]
    assert newest["review_id"] == rid_of(11)
    surest = desk.page(DeskQuery(sort="-confidence"), limit=1)["items"][0]
    assert surest["confidence"] == pytest.approx(11 / 20)
    assert desk.page(DeskQuery(older_than_h=1))["total"] == 0 and desk.page(DeskQuery(newer_than_h=1))["total"] == 12
    facets = desk.facets()
    assert facets["locale"] == ["de-DE", "en-US"] and {"pii", "confidence"} <= set(facets["rule"])


def test_verdicts_undo_history_and_the_decisions_file(desk):
    rid = rid_of(1)
    desk.decide(ReviewDecision(review_id=rid, verdict="edit", text="Eine weiße Tasse.", reviewer="rita"))
    with pytest.raises(DeskConflictError, match="already has a verdict"):
        desk.decide(ReviewDecision(review_id=rid, verdict="reject", reviewer="sam"))
    assert desk.waiting() == 11 and desk.item(rid)["verdict"]["reviewer"] == "rita"
    desk.decide(ReviewDecision(review_id=rid, verdict="undo", reviewer="rita"))
    assert desk.waiting() == 12 and rid not in read_decisions(desk.decisions)
    desk.decide(ReviewDecision(review_id=rid, verdict="approve", reviewer="sam"))
    assert read_decisions(desk.decisions)[rid].verdict == "approve"
    steps = [(h["action"], h["reviewer"], h["after"]) for h in desk.history(rid)]
    assert steps == [("edit", "rita", "Eine weiße Tasse."), ("undo", "rita", None),
                     ("approve", "sam", "A white espresso cup number k01.")]  # fmt: skip
    assert all(h["at"] and h["before"] == "A white espresso cup number k01." for h in desk.history(rid) if h["before"])
    with pytest.raises(DeskConflictError, match="no verdict to undo"):
        desk.decide(ReviewDecision(review_id=rid_of(2), verdict="undo"))
    with pytest.raises(DeskNotFoundError):
        desk.decide(ReviewDecision(review_id="0123456789abcdef", verdict="approve"))
    # The index is a cache: deleted, it is rebuilt from the two files with the same state.
    desk.db_path.unlink()
    assert desk.waiting() == 11 and len(desk.history(rid)) == 3


def test_claims_keep_two_reviewers_apart(desk):
    rid = rid_of(3)
    desk.claim(rid, "session-a", "rita")
    desk.claim(rid, "session-a", "rita")  # renewing one's own claim is fine
    with pytest.raises(DeskConflictError, match="being judged by rita"):
        desk.claim(rid, "session-b", "sam")
    assert rid not in [i["review_id"] for i in desk.page(DeskQuery(), limit=100, session="session-b")["items"]]
    assert rid in [i["review_id"] for i in desk.page(DeskQuery(), limit=100, session="session-a")["items"]]
    with pytest.raises(DeskConflictError):
        desk.decide(ReviewDecision(review_id=rid, verdict="approve", reviewer="sam"), "session-b")
    desk.decide(ReviewDecision(review_id=rid, verdict="approve", reviewer="rita"), "session-a")


def test_lines_written_by_other_processes_are_picked_up(desk, tmp_path):
    ReviewQueue(desk.queue).add(held("late"))
    rid = rid_of(4)
    with desk.decisions.open("a", encoding="utf-8") as fh:  # a verdict appended by hand, then a torn line
        fh.write(json.dumps({"review_id": rid, "verdict": "reject", "reviewer": "cli"}) + '\n{"review_id": ')
    assert desk.waiting() == 12  # 13 queued, 1 rejected; the torn line waits for its end
    assert desk.item(rid)["verdict"]["verdict"] == "reject"


def test_quality_numbers(desk):
    ids = [rid_of(n) for n in range(12)]
    for rid in ids[:4]:
        desk.decide(ReviewDecision(review_id=rid, verdict="approve"))
    desk.decide(ReviewDecision(review_id=ids[4], verdict="edit", text="A white espresso cup on a saucer."))
    desk.decide(ReviewDecision(review_id=ids[5], verdict="reject"))
    (overall,) = quality(desk.verdict_rows())
    assert (overall["n"], overall["approved"], overall["edited"], overall["rejected"]) == (6, 4, 1, 1)
    assert overall["acceptance"] == pytest.approx(4 / 6) and overall["rejection_rate"] == pytest.approx(1 / 6)
    # "A white espresso cup number k04 ." -> "A white espresso cup on a saucer ." : 3 words replaced of 7
    assert overall["edit_distance"] == 3 and overall["edit_share"] == pytest.approx(3 / 7)
    by_locale = {r["locale"]: r for r in quality(desk.verdict_rows(), "locale", "day")}
    assert set(by_locale) == {"en-US", "de-DE"} and sum(r["n"] for r in by_locale.values()) == 6
    assert all(len(r["period"]) == 10 for r in by_locale.values())  # YYYY-MM-DD


def test_edit_distance_counts_words():
    assert edit_distance("a red cup", "a red cup") == (0, 3)
    assert edit_distance("a red cup", "a blue cup here") == (2, 3)


def test_reasons_in_a_reviewers_words_each_once():
    reason = HoldReason(
        code="subject.unnamed", message="The caption names no subject.", fix="Name it.", detail="", rule="subject"
    )
    own = held("r1", reasons=[reason])
    item = {"review_id": "x", "result": own.model_dump(mode="json")}
    assert [r["message"] for r in reviewer_reasons(item)] == ["The caption names no subject."]
    old = held("r2", rule="language")
    old.decisions.append(PolicyDecision(rule="language", action="review", reason="second pass"))
    reasons = reviewer_reasons({"review_id": "y", "result": old.model_dump(mode="json"), "audit": True})
    assert [r["code"] for r in reasons] == ["audit", "language"]  # one per rule, the audit note first
    assert reasons[1]["message"] == reason_words()["language"]["message"] != ""  # policies/reasons.yaml
    assert "language says hold" in reasons[1]["detail"] and "second pass" in reasons[1]["detail"]


def test_the_edit_box_starts_in_the_target_language():
    english = {"text": "A white espresso cup on a wooden table.", "draft": "a white espresso cup"}
    assert best_edit_text({**english, "result": {"locale": "en-US"}}) == (english["text"], "")
    text, hint = best_edit_text({**english, "result": {"locale": "de-DE"}})
    assert text == "" and "German" in hint
    german = {"text": "Eine weiße Espressotasse auf einem Holztisch.", "draft": "a white espresso cup"}
    assert best_edit_text({**german, "result": {"locale": "de-DE"}})[0] == german["text"]


def test_audit_sample_is_a_stable_share_of_ok_results():
    ok = [held(f"a{n}").model_copy(update={"status": "ok"}) for n in range(2000)]
    sampled = [r for r in ok if audit_sampled(r, 0.05)]
    assert 60 <= len(sampled) <= 140 and sampled == [r for r in ok if audit_sampled(r, 0.05)]
    assert not any(audit_sampled(r, 0.05) for r in [held("h1"), held("h2")])  # held items are queued anyway
    assert not any(audit_sampled(r, 0.0) for r in ok)
