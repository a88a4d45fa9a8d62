"""The review desk as the review routers reach it: the queue and decisions paths, the desk over them, the name a
verdict is recorded with, the reviewer's session header, and the desk's errors as HTTP errors."""

from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path
from typing import Any, Iterator

from caption_agent.policies.review_desk import ReviewDesk
from caption_agent.service.errors import ConflictError, NotFoundError, NotReadyError

SESSION_HEADER = "x-review-session"


def review_paths(state: Any) -> tuple[Path, Path]:
    """The review queue and its decisions file; 503 when the service has no queue."""
    if state.review_queue is None:
        raise NotReadyError(
            "no review queue is configured.", fix="set `review_queue` in the service config (or policy.review_queue)."
        )
    return state.review_queue, state.settings.decisions_path(state.review_queue)


def review_desk(state: Any) -> ReviewDesk:
    return ReviewDesk(*review_paths(state))


def reviewer_name(state: Any, request: Any, typed: str) -> str:
    """The name recorded with a verdict: the one the service settings give the caller's API key, else the one
    typed on the page."""
    from caption_agent.service.security import COOKIE

    names = state.settings.reviewers
    if names:
        headers = request.headers
        auth = headers.get("authorization", "")
        key = headers.get("x-api-key") or (auth[7:].strip() if auth[:7].lower() == "bearer " else None)
        key = key or request.cookies.get(COOKIE)
        if key:
            name = names.get("sha256:" + hashlib.sha256(key.encode("utf-8")).hexdigest())
            if name:
                return str(name)
    return typed.strip()[:120]


def desk_session(request: Any) -> str:
    return str(request.headers.get(SESSION_HEADER, ""))[:80]


@contextlib.contextmanager
def mapped_desk_errors() -> Iterator[None]:
    """The desk's errors as HTTP errors: 409 for a conflict (decided, claimed), 404 for an unknown id."""
    from caption_agent.policies.review_desk import DeskConflictError, DeskNotFoundError

    try:
        yield
    except DeskConflictError as exc:
        raise ConflictError(exc.reason, fix=exc.fix) from None
    except DeskNotFoundError as exc:
        raise NotFoundError(exc.reason, fix=exc.fix) from None
