"""The review page (/review): results waiting for a person, with the image, draft, refined caption, facts and
policy reasons; verdicts are appended through ``policies.review`` to the file `caption-agent review import` reads.
"""

# No `from __future__ import annotations`: FastAPI reads the route signatures. The module imports fastapi:
# only create_app imports it, after checking the `serve` extra.

import asyncio
import io
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, Field

from caption_agent.policies.review_desk import ReviewDesk
from caption_agent.policies.verdicts import ReviewDecision
from caption_agent.service.deps import State, review_key
from caption_agent.service.desk import desk_session, mapped_desk_errors, review_desk, review_paths, reviewer_name
from caption_agent.service.errors import ConflictError, EditRefusedError, NotFoundError
from caption_agent.service.schemas import error_responses
from caption_agent.service.security import COOKIE

_THUMB_PX = 640
# The pages' script and styles are files: the Content-Security-Policy admits no inline script or style.
_STATIC = {
    "review.js": "text/javascript; charset=utf-8",
    "review.css": "text/css; charset=utf-8",
    "docs.js": "text/javascript; charset=utf-8",
}


class DecisionAck(BaseModel):
    review_id: str
    verdict: str
    reviewer: str = Field("", description="The name recorded with the verdict.")
    decisions_file: str = Field(description="The JSONL file `caption-agent review import` reads.")
    import_command: str = Field(description="The command that applies the verdicts to the caption records.")


@lru_cache(maxsize=1)
def _env() -> Any:
    import jinja2

    return jinja2.Environment(
        loader=jinja2.FunctionLoader(
            lambda name: (
                resources.files("caption_agent.service").joinpath("templates", name).read_text(encoding="utf-8")
            )
        ),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )


@lru_cache(maxsize=len(_STATIC))
def _static(name: str) -> bytes:
    return resources.files("caption_agent.service").joinpath("static", name).read_bytes()


def render(name: str, **context: Any) -> str:
    return str(_env().get_template(name).render(**context))


def import_command(queue: Path, decisions: Path) -> str:
    out = queue.with_name(queue.stem + ".reviewed.jsonl")
    return f"caption-agent review import {decisions} --results {queue} --out {out}"


router = APIRouter()
_LOGIN_FORM = {"description": "No or wrong API key: the sign-in form", "content": {"text/html": {}}}


@router.get(
    "/review",
    response_class=HTMLResponse,
    tags=["review"],
    summary="The review desk (items load from /review/api).",
    responses={401: _LOGIN_FORM, **error_responses(503)},
)
async def review_page(request: Request, state: State) -> Any:
    try:
        state.keys.check(request.headers, request.cookies)
    except Exception:  # noqa: BLE001 - any auth failure shows the key form
        return HTMLResponse(render("login.html", failed=bool(request.cookies.get(COOKIE))), status_code=401)
    queue, decisions = review_paths(state)
    named = reviewer_name(state, request, "")
    page = render(
        "review.html", queue=str(queue), decisions=str(decisions), reviewer=named,
        import_command=import_command(queue, decisions),
    )  # fmt: skip
    return HTMLResponse(page)


@router.post(
    "/review/login",
    tags=["review"],
    summary="Trade an API key for a review-page cookie.",
    status_code=303,
    responses={303: {"description": "Back to /review"}, 401: _LOGIN_FORM},
)
async def review_login(request: Request, state: State, key: str = Form(max_length=512)) -> Any:
    if not state.keys.valid(key):
        return HTMLResponse(render("login.html", failed=True), status_code=401)
    reply = RedirectResponse("/review", status_code=303)
    # Secure over TLS: direct, or as a trusted proxy's X-Forwarded-Proto (the HTTP guard sets the scheme).
    secure = request.url.scheme == "https"
    reply.set_cookie(COOKIE, key, httponly=True, secure=secure, samesite="strict", path="/review")
    return reply


@router.get("/static/{name}", include_in_schema=False)
async def static_file(name: str) -> Response:
    if name not in _STATIC:
        raise NotFoundError(f"no static file {name!r}.", fix="the page's files are: " + ", ".join(_STATIC) + ".")
    return Response(_static(name), media_type=_STATIC[name], headers={"Cache-Control": "no-cache"})


@router.get(
    "/review/images/{review_id}",
    tags=["review"],
    dependencies=[Depends(review_key)],
    summary="The queued item's image, re-encoded as a JPEG thumbnail.",
    responses={200: {"content": {"image/jpeg": {}}}, **error_responses(401, 404, 503)},
)
async def review_image(review_id: str, state: State) -> Response:
    queue, _ = review_paths(state)
    data = await asyncio.to_thread(_thumbnail, state, queue, review_id)
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})


@router.post(
    "/review/decisions",
    response_model=DecisionAck,
    tags=["review"],
    dependencies=[Depends(review_key)],
    responses=error_responses(401, 403, 404, 409, 422, 503),
    summary="Record a verdict (approve | edit | reject | undo) for a queued item; edits are re-checked first.",
)
async def review_decide(decision: ReviewDecision, request: Request, state: State) -> DecisionAck:
    queue, decisions = review_paths(state)
    desk = ReviewDesk(queue, decisions)
    with mapped_desk_errors():
        item = await asyncio.to_thread(desk.item, decision.review_id)
    if decision.verdict == "approve" and not item.get("text"):
        raise EditRefusedError(
            f"{decision.review_id} has no caption to approve.",
            fix="write the caption and save it as an edit, ask for another attempt, or reject the item.",
            rules=[],
            suggestion=None,
        )
    if decision.verdict == "edit":
        # The policy engine is model work: it runs in the service's single model thread.
        await state.in_model_thread(_check_edit, state.agent, item, decision.text or "")
    named = decision.model_copy(update={"reviewer": reviewer_name(state, request, decision.reviewer)})
    with mapped_desk_errors():
        await asyncio.to_thread(desk.decide, named, desk_session(request))
    state.metrics.observe_verdict(named, item)
    return DecisionAck(review_id=decision.review_id, verdict=decision.verdict, reviewer=named.reviewer,
                       decisions_file=str(decisions), import_command=import_command(queue, decisions))  # fmt: skip


@router.post(
    "/review/api/items/{review_id}/retry",
    tags=["review"],
    dependencies=[Depends(review_key)],
    responses=error_responses(401, 403, 404, 409, 422, 503),
    summary="Another attempt: caption the item again with the refiners after the one that wrote it.",
)
async def review_retry(review_id: str, request: Request, state: State) -> dict[str, Any]:
    queue, _ = review_paths(state)
    with mapped_desk_errors():
        item = await asyncio.to_thread(review_desk(state).item, review_id)
    result = await state.in_model_thread(_retry, state, queue, item)
    who = reviewer_name(state, request, request.headers.get("x-reviewer", ""))
    await asyncio.to_thread(review_desk(state).note, review_id, "retry", who, item.get("text") or "", result.text or "")
    return {
        "review_id": review_id,
        "status": result.status,
        "text": result.text or "",
        "refined_by": result.provenance.refined_by,
        "reasons": [r.model_dump() for r in result.reasons],
        "hint": result.hint.model_dump(exclude_none=True) if result.hint else {},
        "facts": [f.id for f in result.facts],
        "facts_used": result.facts_used,
    }


def _check_edit(agent: Any, item: dict[str, Any], text: str) -> None:
    """Refuse an edit that any re-checked rule objects to, even one the policy could fix (PII masked, text
    trimmed): what the reviewer typed is recorded as typed or not at all. ``suggestion`` is the fixed text."""
    from pydantic import ValidationError

    from caption_agent.errors import PolicyError
    from caption_agent.policies.verdicts import check_edit, suggest_fix
    from caption_agent.schemas import CaptionResult

    try:
        result = CaptionResult.model_validate(item.get("result") or {})
    except ValidationError as exc:
        raise PolicyError(
            f"queue item {item.get('review_id')} holds no valid result ({exc.error_count()} "
            "error(s)), so its edit cannot be checked.",
            fix="re-queue the result with `caption-agent review export`, or reject the item.",
        ) from None
    check = check_edit(result, text, agent.policy)
    if check.failing:
        raise EditRefusedError(
            f"the edit was not saved: {check.message()}.",
            fix=check.fix() + ", then save the edit again.",
            rules=[{"rule": d.rule, "action": d.action, "reason": d.reason} for d in check.failing],
            suggestion=suggest_fix(result, check, agent.policy),
        )


def _thumbnail(state: Any, queue: Path, review_id: str) -> bytes:
    """The item's image, re-encoded as a JPEG thumbnail."""
    from caption_agent.policies.review_desk import DeskNotFoundError, ReviewDesk

    try:
        item = ReviewDesk(queue, state.settings.decisions_path(queue)).item(review_id)
    except DeskNotFoundError:
        raise NotFoundError(f"no image for review item {review_id!r}.") from None
    image = _image(state, queue, item)
    image.thumbnail((_THUMB_PX, _THUMB_PX))
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=85)
    return buf.getvalue()


def _image_bytes(state: Any, queue: Path, item: dict[str, Any]) -> bytes:
    """The item's image bytes (uploaded bytes kept by sha256, else its file path), if its sha256 still matches."""
    import hashlib

    info = (item.get("result") or {}).get("image") or {}
    sha = str(info.get("sha256") or "")
    if len(sha) != 64 or not sha.isalnum():
        raise NotFoundError(f"no image for review item {item.get('review_id')!r}.")
    candidates = [state.settings.images_path(queue) / sha]
    if info.get("source") and info["source"] != "<bytes>":
        candidates.append(Path(info["source"]))
    for path in candidates:
        if path.is_file():
            data = path.read_bytes()
            if hashlib.sha256(data).hexdigest() == sha:  # else the file changed: not the image to judge
                return data
    raise NotFoundError(
        f"the image of review item {item.get('review_id')!r} is no longer available.",
        fix="the original file moved or changed; judge the item from its draft and facts.",
    )


def _image(state: Any, queue: Path, item: dict[str, Any]) -> Any:
    from caption_agent.errors import CaptionAgentError
    from caption_agent.images import load_image

    data = _image_bytes(state, queue, item)
    try:
        image, _ = load_image(data, state.agent.config.images)
    except CaptionAgentError:
        raise NotFoundError(f"the image of review item {item.get('review_id')!r} no longer decodes.") from None
    return image


def _retry(state: Any, queue: Path, item: dict[str, Any]) -> Any:
    """Caption the item again with the links of the refiner chain after the one that wrote it (model thread)."""
    from pydantic import ValidationError

    from caption_agent.refiners.chain import RefinerChain
    from caption_agent.schemas import CaptionRequest, ProductHint

    result = item.get("result") or {}
    agent = state.agent
    chain = agent.refiner
    names = [link.name for link in chain.links]
    used = str((result.get("provenance") or {}).get("refined_by") or "")
    # After the link that wrote it; a link this service does not run (the item came from another setup): all.
    rest = list(chain.links[names.index(used) + 1 :]) if used in names else [] if used in ("", "draft") else chain.links
    if not rest:
        raise ConflictError(
            f"no refiner after {used if used not in ('', 'draft') else 'the draft'} in the chain ({chain.name}) "
            "is left to try.",
            fix="correct the caption yourself (edit) or reject the item.",
        )
    try:  # the product hint the first attempt had (results keep it), so this one grounds on the same product
        hint = ProductHint.model_validate(result.get("hint") or {})
    except ValidationError as exc:
        raise ConflictError(
            f"the product hint kept with review item {item.get('review_id')!r} is not valid "
            f"({exc.error_count()} error(s)), so another attempt would not ground on the same product.",
            fix="correct the caption yourself (edit) or reject the item.",
        ) from None
    request = CaptionRequest(
        image=_image_bytes(state, queue, item), style=result.get("style") or "alt_text",
        locale=result.get("locale") or "en-US", key=result.get("key"), hint=hint,
    )  # fmt: skip
    # The same loaded models with the rest of the chain; the service's agent itself is left as it is.
    return agent.sharing(refiner=RefinerChain(links=rest, draft=chain.draft)).caption_batch([request])[0]
