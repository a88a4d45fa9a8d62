"""The refine loop's decision after an attempt, as a table: (answer, verdict, what is left) -> the step."""

from __future__ import annotations

import pytest

from caption_agent.stages.decide import Attempt, Left, Step, decide, fall_back

LAST_EN = Left(attempts=0, last=True, draft_ok=True)  # the last link, nothing left, an English draft
LAST_DE = Left(attempts=0, last=True, draft_ok=False)  # the same, but the draft is in another language
MORE = Left(attempts=2, last=False, draft_ok=True)  # attempts and links left

TABLE = [
    # a server that is down fails the item (retryable), whatever is left
    (Attempt("down"), MORE, Step("fail")),
    (Attempt("down"), LAST_EN, Step("fail")),
    # an unusable answer is retried while attempts are left; a link that cannot write is never retried
    (Attempt("unusable"), MORE, Step("retry")),
    (Attempt("cannot"), MORE, Step("next_link")),
    (Attempt("broken"), MORE, Step("next_link")),
    (Attempt("unusable"), Left(0, False, True), Step("next_link")),
    # out of answers on the last link: the draft stands in, else what is known goes to review, else fail
    (Attempt("unusable"), LAST_EN, Step("publish", "draft")),
    (Attempt("cannot"), Left(0, True, False, gap=True), Step("hold", "gap")),
    (Attempt("broken"), Left(0, True, False, rejected=True, gap=True), Step("hold", "rejected")),
    (Attempt("unusable"), LAST_DE, Step("fail")),
    # a verdict on a text
    (Attempt("text", "allow"), MORE, Step("publish", "answer")),
    (Attempt("text", "redact"), LAST_DE, Step("publish", "answer")),
    (Attempt("text", "block"), MORE, Step("publish", "answer")),  # a block is final, on any link
    (Attempt("text", "block"), LAST_DE, Step("publish", "answer")),
    (Attempt("text", "regenerate"), MORE, Step("retry")),
    (Attempt("text", "regenerate"), Left(0, False, True), Step("next_link")),
    (Attempt("text", "review"), Left(0, False, True), Step("next_link")),
    (Attempt("text", "fallback"), Left(1, False, True), Step("next_link")),
    (Attempt("text", "review"), LAST_EN, Step("publish", "answer")),
    (Attempt("text", "fallback"), LAST_EN, Step("publish", "draft")),
    (Attempt("text", "regenerate"), LAST_EN, Step("publish", "draft")),
    # the draft cannot stand in: the answer is held for a person (as moderated), never the draft published
    (Attempt("text", "fallback"), LAST_DE, Step("hold", "answer")),
    (Attempt("text", "regenerate"), LAST_DE, Step("hold", "answer")),
    (Attempt("text", "review"), LAST_DE, Step("publish", "answer")),  # held as the policy said, with the answer
]


@pytest.mark.parametrize(("attempt", "left", "step"), TABLE)
def test_decide(attempt: Attempt, left: Left, step: Step) -> None:
    assert decide(attempt, left) == step


@pytest.mark.parametrize(
    ("left", "step"),
    [
        (Left(0, True, True, rejected=True, gap=True), Step("publish", "draft")),  # the draft first
        (Left(0, True, False, rejected=True), Step("hold", "rejected")),
        (Left(0, True, False, gap=True), Step("hold", "gap")),
        (Left(0, True, False), Step("fail")),
    ],
)
def test_fall_back_is_the_one_owner_of_the_draft(left: Left, step: Step) -> None:
    assert fall_back(left) == step
