"""What the service keeps for the review desk after each batch: the results needing review when the agent's own
config names no queue, the audit sample of ok results, and the uploaded images the desk will show."""

from __future__ import annotations

from typing import Any

from caption_agent.policies.review import ReviewQueue, audit_sampled, needs_review


def keep_for_review(state: Any, requests: list[Any], results: list[Any]) -> None:
    """After a batch: keep the uploaded images of results the desk will show (held, or sampled for an audit),
    and queue the audit sample of ok results (``audit_share``)."""
    queue = state.review_queue
    if queue is None:
        return
    folder = state.settings.images_path(queue)
    for request, result in zip(requests, results):
        audit = audit_sampled(result, state.settings.audit_share)
        if audit:
            ReviewQueue(queue).add(result, audit=True)
        if (audit or needs_review(result)) and isinstance(request.image, bytes) and result.image is not None:
            folder.mkdir(parents=True, exist_ok=True)
            target = folder / result.image.sha256
            if not target.exists():
                target.write_bytes(request.image)


def queue_holds(state: Any, results: list[Any]) -> None:
    """Append the results that need review to the service's queue (when the agent's own config names none)."""
    queue = ReviewQueue(state.review_queue)
    for result in results:
        if needs_review(result):
            queue.add(result)
