"""The review desk's JSON API under /review/api: pages of the queue (filters, sorting), one item at a glance,
claims, bulk verdicts, undo, history per caption, another attempt, the waiting count and the quality numbers.

The queue and its decisions file stay the record (``policies.review_desk`` indexes them); a verdict is written
to the decisions file, which `caption-agent review import DECISIONS --results QUEUE` applies.
"""

# No `from __future__ import annotations`: FastAPI reads the route signatures. The module imports fastapi:
# only create_app imports it, after checking the `serve` extra.

import asyncio
import contextlib
from typing import Any, Literal, Optional

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from caption_agent.policies.review_desk import DeskQuery
from caption_agent.policies.review_stats import DIMENSIONS, quality
from caption_agent.policies.verdicts import ReviewDecision
from caption_agent.service.deps import State, review_key
from caption_agent.service.desk import desk_session, mapped_desk_errors, review_desk, reviewer_name
from caption_agent.service.errors import BadRequestError, ConflictError
from caption_agent.service.schemas import error_responses


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


router = APIRouter(prefix="/review/api", tags=["review"], dependencies=[Depends(review_key)])
_READ, _ONE = error_responses(401, 403, 422, 503), error_responses(401, 403, 404, 422, 503)


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


@router.get("/items", responses=_READ, summary="A page of the review queue.")
async def list_items(
    request: Request,
    state: State,
    filters: Filters = Depends(filters_of),  # noqa: B008 - FastAPI's dependency declaration
    offset: int = Query(0, ge=0, le=2**62),  # SQLite integers are 64-bit: a larger offset is a 422, not a 500
    limit: int = Query(50, ge=1, le=500),
) -> dict[str, Any]:
    query = DeskQuery(**filters.model_dump())
    with mapped_desk_errors():
        page: dict[str, Any] = await asyncio.to_thread(
            review_desk(state).page, query, offset, limit, desk_session(request)
        )
    state.metrics.review_waiting.set(page["waiting"])
    return page


@router.get("/facets", responses=_READ, summary="Values each filter can take.")
async def facets(state: State) -> dict[str, list[str]]:
    result: dict[str, list[str]] = await asyncio.to_thread(review_desk(state).facets)
    return result


@router.get("/waiting", responses=_READ, summary="Items waiting for a verdict.")
async def waiting(state: State) -> dict[str, int]:
    count = await asyncio.to_thread(review_desk(state).waiting)
    state.metrics.review_waiting.set(count)
    return {"waiting": count}


@router.get("/items/{review_id}", responses=_ONE, summary="One item at a glance.")
async def get_item(review_id: str, state: State) -> dict[str, Any]:
    from caption_agent.service.review_view import item_view

    def load() -> dict[str, Any]:
        d = review_desk(state)
        return item_view(d.item(review_id), d.history(review_id))

    with mapped_desk_errors():
        view: dict[str, Any] = await asyncio.to_thread(load)
    return view


@router.get("/items/{review_id}/history", responses=_ONE, summary="Verdict history.")
async def history(review_id: str, state: State) -> list[dict[str, Any]]:
    with mapped_desk_errors():
        rows: list[dict[str, Any]] = await asyncio.to_thread(review_desk(state).history, review_id)
    return rows


@router.post(
    "/items/{review_id}/claim",
    responses=error_responses(401, 403, 404, 409, 422, 503),
    summary="Open an item for judging: no other reviewer is offered it while the claim is renewed.",
)
async def claim(review_id: str, request: Request, state: State) -> dict[str, str]:
    who = reviewer_name(state, request, "")
    with mapped_desk_errors():
        await asyncio.to_thread(review_desk(state).claim, review_id, desk_session(request), who)
    return {"review_id": review_id, "claimed_by": who}


async def _bulk_plan(state: Any, body: BulkBody, session: str) -> tuple[BulkPlan, list[str]]:
    """What a bulk verdict covers: never bulk-approve what safety, PII or injection held, nor an empty caption."""
    query = DeskQuery(**body.filters.model_dump())

    def plan() -> tuple[int, list[dict[str, Any]]]:
        page = review_desk(state).page(query, 0, 100_000, session)
        return page["total"], page["items"]

    total, items = await asyncio.to_thread(plan)
    if body.verdict == "approve":
        ids = [i["review_id"] for i in items if not i["safety"] and i["text"] and not i["verdict"]]
    else:
        ids = [i["review_id"] for i in items if not i["verdict"]]
    return BulkPlan(verdict=body.verdict, count=len(ids), left_out=total - len(ids)), ids


@router.post("/bulk/preview", response_model=BulkPlan, responses=_READ,
             summary="How many items a bulk verdict on these filters would cover.")  # fmt: skip
async def bulk_preview(body: BulkBody, request: Request, state: State) -> BulkPlan:
    return (await _bulk_plan(state, body, desk_session(request)))[0]


@router.post("/bulk", response_model=BulkPlan, responses=error_responses(401, 403, 409, 422, 503),
             summary="Approve or reject every item the filters select (safety, PII and injection holds are "
             "never bulk-approved); `expected` must match the confirmed count.")  # fmt: skip
async def bulk(body: BulkBody, request: Request, state: State) -> BulkPlan:
    session = desk_session(request)
    plan, ids = await _bulk_plan(state, body, session)
    if body.expected is not None and body.expected != plan.count:
        raise ConflictError(
            f"the selection changed: {plan.count} item(s) match now, {body.expected} were confirmed.",
            fix="look at the new count and confirm again.",
        )
    who = reviewer_name(state, request, "")

    def write() -> int:
        d, done = review_desk(state), 0
        for rid in ids:
            with contextlib.suppress(Exception):  # an item another reviewer decided meanwhile is skipped
                d.decide(ReviewDecision(review_id=rid, verdict=body.verdict, reviewer=who, note=body.note), session)
                done += 1
        return done

    plan.done = await asyncio.to_thread(write)
    for _ in range(plan.done):
        state.metrics.review.labels(body.verdict).inc()
    return plan


@router.get("/stats", responses=_READ, summary="Quality numbers: acceptance, edit and rejection rate, edit distance.")
async def stats(
    state: State,
    by: Optional[str] = Query(None, description="style | locale | drafter | refiner | audit"),
    period: Literal["day", "week", "all"] = "all",
) -> dict[str, Any]:
    if by is not None and by not in DIMENSIONS:
        raise BadRequestError(f"cannot group by {by!r}.", fix=f"use one of: {', '.join(DIMENSIONS)}.")
    rows = await asyncio.to_thread(review_desk(state).verdict_rows)
    return {"by": by, "period": period, "rows": quality(rows, by, period)}
