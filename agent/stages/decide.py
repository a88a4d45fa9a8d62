"""What the refine loop does after each attempt: a pure decision over the attempt's answer, the policy's verdict
and what is left (attempts, links, whether the draft may stand in).

``decide`` is the one owner of the chain: the policy engine only judges a text (its ``ModerationOutcome``), and
whether the draft stands in is decided here, by ``fall_back``, for every way an item can run out of answers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["retry", "next_link", "publish", "hold", "fail"]
# What a step publishes or holds: the link's answer as moderated, the draft (judged as a stand-in), an earlier
# link's rejected answer, or no text (a link said which data it lacked).
What = Literal["answer", "draft", "rejected", "gap", ""]
# An attempt's answer: a text (with the policy's verdict), an unusable answer a retry may fix, a link that cannot
# write this item (no data), a server that is down, or a refiner that broke its contract.
Answer = Literal["text", "unusable", "cannot", "down", "broken"]


@dataclass(frozen=True)
class Step:
    kind: Kind
    what: What = ""


@dataclass(frozen=True)
class Attempt:
    """One attempt's answer and the policy's verdict on it (``action``, for a text)."""

    answer: Answer
    action: str = ""


@dataclass(frozen=True)
class Left:
    """What is left for the item: attempts with this link, whether this is the chain's last link, whether the
    draft may stand in, whether an earlier link's answer was rejected, whether a link said which data it lacked."""

    attempts: int
    last: bool
    draft_ok: bool
    rejected: bool = False
    gap: bool = False


_NOT_PUBLISHABLE = ("fallback", "regenerate", "review")


def decide(attempt: Attempt, left: Left) -> Step:
    """The step after one attempt."""
    if attempt.answer == "down":  # the server is down after its retries: retryable, never a silent fallback
        return Step("fail")
    if attempt.answer != "text":
        if left.attempts > 0 and attempt.answer == "unusable":  # the next attempt is told why
            return Step("retry")
        return fall_back(left) if left.last else Step("next_link")
    action = attempt.action
    if action == "regenerate" and left.attempts > 0:
        return Step("retry")
    if not left.last and action in _NOT_PUBLISHABLE:  # the next link writes before the draft
        return Step("next_link")
    if action in ("fallback", "regenerate"):  # the policy wants the draft instead of this answer
        # A draft in another language cannot stand in: a person decides on the answer (as moderated).
        return Step("publish", "draft") if left.draft_ok else Step("hold", "answer")
    return Step("publish", "answer")


def fall_back(left: Left) -> Step:
    """The item has no publishable answer: the draft stands in when it may; otherwise an earlier link's rejected
    answer is held, else the item is held with the data a link said it lacked, else it fails (retryable)."""
    if left.draft_ok:
        return Step("publish", "draft")
    if left.rejected:
        return Step("hold", "rejected")
    if left.gap:
        return Step("hold", "gap")
    return Step("fail")
