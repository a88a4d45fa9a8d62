"""The review desk's JSON API under /review/api: pages of the queue (filters, sorting), one item at a glance,
claims, bulk verdicts, undo, history per caption, another attempt, the waiting count and the quality numbers.

The queue and its decisions file stay the record (``policies.review_desk`` indexes them); a verdict is written
to the decisions file, which `caption-agent review import DECISIONS --results QUEUE` applies.
"""

# No `from __future__ import annotations`: FastAPI reads the route signatures of the closures below.

import asyncio
import contextlib
import hashlib
from typing import TYPE_CHECKING, Any, Iterator, Literal, Optional

from pydantic import BaseModel, Field

from caption_agent.service.errors import BadRequestError, ConflictError, NotFoundError

if TYPE_CHECKING:  # fastapi loads only when an app is built
    from fastapi import FastAPI

SESSION_HEADER = "x-review-session"


class Filters(BaseModel):
    """Which items a page or a bulk verdict covers (every field optional)."""

    status: Literal["pending", "decided", "audit", "all"] = "pending"
    rule: Optional[str] = Field(None, max_length=80, description="A rule name or reason code (pii, subject.unnamed).")
    style: Optional[str] = Field(None, max_length=80)
    locale: Optional[str] = Field(None, max_length=40)
    drafter: Optional[str] = Field(None, max_length=80)
    refiner: Optional[str] = Field(None, max_length=80)
    older_than_h: Optional[float] = Field(None, ge=0, le=24 * 3650, description="Queued at least this long ago.")
    newer_than_h: Optional[float] = Field(None, ge=0, le=24 * 3650, description="Queued at most this long ago.")
    sort: Literal["oldest", "newest", "confidence", "-confidence"] = "oldest"


class BulkBody(BaseModel):
    verdict: Literal["approve", "reject"]
    filters: Filters = Field(default_factory=Filters)
    expected: Optional[int] = Field(
        None, ge=0, description="The count the reviewer confirmed; 409 when the selection has changed since."
    )
    note: str = Field("", max_length=2000)


class BulkPlan(BaseModel):
    verdict: str
    count: int = Field(description="Items the verdict would be given to.")
    left_out: int = Field(description="Matching items left out: held for safety, PII or injection, or no caption.")
    done: int = 0


def add_review_api(app: "FastAPI", state: Any, desk: Any, auth: Any) -> None:
    from fastapi import Depends, Query, Request

    from caption_agent.policies.review_desk import DeskQuery
    from caption_agent.policies.review_stats import DIMENSIONS, quality
    from caption_agent.policies.verdicts import ReviewDecision
    from caption_agent.service.schemas import error_responses

    deps = [Depends(auth)]
    read, one = error_responses(401, 403, 422, 503), error_responses(401, 403, 404, 422, 503)

    def filters_of(
        status: Literal["pending", "decided", "audit", "all"] = "pending",
        rule: Optional[str] = Query(None, max_length=80),
        style: Optional[str] = Query(None, max_length=80),
        locale: Optional[str] = Query(None, max_length=40),
        drafter: Optional[str] = Query(None, max_length=80),
        refiner: Optional[str] = Query(None, max_length=80),
        older_than_h: Optional[float] = Query(None, ge=0, le=24 * 3650),
        newer_than_h: Optional[float] = Query(None, ge=0, le=24 * 3650),
        sort: Literal["oldest", "newest", "confidence", "-confidence"] = "oldest",
    ) -> Filters:
        return Filters(status=status, rule=rule, style=style, locale=locale, drafter=drafter, refiner=refiner,
                       older_than_h=older_than_h, newer_than_h=newer_than_h, sort=sort)  # fmt: skip

    @app.get("/review/api/items", tags=["review"], dependencies=deps, responses=read,
             summary="A page of the review queue.")  # fmt: skip
    async def list_items(
        request: Request,
        filters: Filters = Depends(filters_of),  # noqa: B008 - FastAPI's dependency declaration
        offset: int = Query(0, ge=0),
        limit: int = Query(50, ge=1, le=500),
    ) -> dict[str, Any]:
        query = DeskQuery(**filters.model_dump())
        with _mapped():
            page: dict[str, Any] = await asyncio.to_thread(desk().page, query, offset, limit, _session(request))
        state.metrics.review_waiting.set(page["waiting"])
        return page

    @app.get("/review/api/facets", tags=["review"], dependencies=deps, responses=read,
             summary="Values each filter can take.")  # fmt: skip
    async def facets() -> dict[str, list[str]]:
        result: dict[str, list[str]] = await asyncio.to_thread(desk().facets)
        return result

    @app.get("/review/api/waiting", tags=["review"], dependencies=deps, responses=read,
             summary="Items waiting for a verdict.")  # fmt: skip
    async def waiting() -> dict[str, int]:
        count = await asyncio.to_thread(desk().waiting)
        state.metrics.review_waiting.set(count)
        return {"waiting": count}

    @app.get("/review/api/items/{review_id}", tags=["review"], dependencies=deps, responses=one,
             summary="One item at a glance.")  # fmt: skip
    async def get_item(review_id: str) -> dict[str, Any]:
        from caption_agent.service.review_view import item_view

        def load() -> dict[str, Any]:
            d = desk()
            return item_view(d.item(review_id), d.history(review_id))

        with _mapped():
            view: dict[str, Any] = await asyncio.to_thread(load)
        return view

    @app.get("/review/api/items/{review_id}/history", tags=["review"], dependencies=deps, responses=one,
             summary="Verdict history.")  # fmt: skip
    async def history(review_id: str) -> list[dict[str, Any]]:
        with _mapped():
            rows: list[dict[str, Any]] = await asyncio.to_thread(desk().history, review_id)
        return rows

    @app.post(
        "/review/api/items/{review_id}/claim",
        tags=["review"],
        dependencies=deps,
        responses=error_responses(401, 403, 404, 409, 422, 503),
        summary="Open an item for judging: no other reviewer is offered it while the claim is renewed.",
    )
    async def claim(review_id: str, request: Request) -> dict[str, str]:
        who = reviewer_name(state, request, "")
        with _mapped():
            await asyncio.to_thread(desk().claim, review_id, _session(request), who)
        return {"review_id": review_id, "claimed_by": who}

    async def bulk_plan(body: BulkBody, session: str) -> tuple[BulkPlan, list[str]]:
        query = DeskQuery(**body.filters.model_dump())

        def plan() -> tuple[int, list[dict[str, Any]]]:
            page = desk().page(query, 0, 100_000, session)
            return page["total"], page["items"]

        total, items = await asyncio.to_thread(plan)
        if body.verdict == "approve":  # never bulk-approve what safety, PII or injection held, nor an empty caption
            ids = [i["review_id"] for i in items if not i["safety"] and i["text"] and not i["verdict"]]
        else:
            ids = [i["review_id"] for i in items if not i["verdict"]]
        return BulkPlan(verdict=body.verdict, count=len(ids), left_out=total - len(ids)), ids

    @app.post("/review/api/bulk/preview", tags=["review"], dependencies=deps, response_model=BulkPlan, responses=read,
              summary="How many items a bulk verdict on these filters would cover.")  # fmt: skip
    async def bulk_preview(body: BulkBody, request: Request) -> BulkPlan:
        return (await bulk_plan(body, _session(request)))[0]

    @app.post("/review/api/bulk", tags=["review"], dependencies=deps, response_model=BulkPlan,
              responses=error_responses(401, 403, 409, 422, 503),
              summary="Approve or reject every item the filters select (safety, PII and injection holds are "
              "never bulk-approved); `expected` must match the confirmed count.")  # fmt: skip
    async def bulk(body: BulkBody, request: Request) -> BulkPlan:
        session = _session(request)
        plan, ids = await bulk_plan(body, session)
        if body.expected is not None and body.expected != plan.count:
            raise ConflictError(
                f"the selection changed: {plan.count} item(s) match now, {body.expected} were confirmed.",
                fix="look at the new count and confirm again.",
            )
        who = reviewer_name(state, request, "")

        def write() -> int:
            d, done = desk(), 0
            for rid in ids:
                with contextlib.suppress(Exception):  # an item another reviewer decided meanwhile is skipped
                    d.decide(ReviewDecision(review_id=rid, verdict=body.verdict, reviewer=who, note=body.note), session)
                    done += 1
            return done

        plan.done = await asyncio.to_thread(write)
        for _ in range(plan.done):
            state.metrics.review.labels(body.verdict).inc()
        return plan

    @app.get("/review/api/stats", tags=["review"], dependencies=deps, responses=read,
             summary="Quality numbers: acceptance, edit and rejection rate, edit distance.")  # fmt: skip
    async def stats(
        by: Optional[str] = Query(None, description="style | locale | drafter | refiner | audit"),
        period: Literal["day", "week", "all"] = "all",
    ) -> dict[str, Any]:
        if by is not None and by not in DIMENSIONS:
            raise BadRequestError(f"cannot group by {by!r}.", fix=f"use one of: {', '.join(DIMENSIONS)}.")
        rows = await asyncio.to_thread(desk().verdict_rows)
        return {"by": by, "period": period, "rows": quality(rows, by, period)}


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


def _session(request: Any) -> str:
    return str(request.headers.get(SESSION_HEADER, ""))[:80]


@contextlib.contextmanager
def _mapped() -> Iterator[None]:
    """The desk's errors as HTTP errors: 409 for a conflict (decided, claimed), 404 for an unknown id."""
    from caption_agent.policies.review_desk import DeskConflictError, DeskNotFoundError

    try:
        yield
    except DeskConflictError as exc:
        raise ConflictError(exc.reason, fix=exc.fix) from None
    except DeskNotFoundError as exc:
        raise NotFoundError(exc.reason, fix=exc.fix) from None
