"""The review page (/review): results waiting for a person, with the image, draft, refined caption, facts and
policy reasons; verdicts are appended through ``policies.review`` to the file `caption-agent review import` reads.
"""

# No `from __future__ import annotations`: FastAPI reads the route signatures of the closures below, whose
# types are imported inside the functions (fastapi loads only when an app is built).

import asyncio
import io
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from caption_agent.service.errors import ConflictError, EditRefusedError, NotFoundError, NotReadyError

if TYPE_CHECKING:  # fastapi loads only when an app is built
    from fastapi import FastAPI

_THUMB_PX = 640
# The pages' script and styles are files: the Content-Security-Policy admits no inline script or style.
_STATIC = {"review.js": "text/javascript; charset=utf-8", "review.css": "text/css; charset=utf-8"}


class DecisionAck(BaseModel):
    review_id: str
    verdict: str
    decisions_file: str = Field(description="The JSONL file `caption-agent review import` reads.")


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


def view_item(item: dict[str, Any]) -> dict[str, Any]:
    """What the page shows of one queue line."""
    result = item.get("result") or {}
    used = set(result.get("facts_used") or [])
    screen = next(
        (d.get("details") or {} for d in result.get("decisions") or [] if d.get("rule") == "image_safety"), None
    )
    return {
        "review_id": item["review_id"],
        "key": item.get("key") or "",
        "source": item.get("image") or "",
        "text": item.get("text") or "",
        "draft": item.get("draft") or "",
        "style": result.get("style", ""),
        "locale": result.get("locale", ""),
        "confidence": result.get("confidence"),
        "reasons": item.get("reasons") or [],
        "facts": [
            {"id": f.get("id", ""), "text": f.get("text", ""), "used": f.get("id") in used}
            for f in result.get("facts") or []
        ],
        "decisions": [d for d in result.get("decisions") or [] if d.get("action") != "allow"],
        # Face count and boxes from screening (None: not screened, or the face detector was missing).
        "screened": screen is not None,
        "faces": (screen or {}).get("faces"),
        "face_boxes": (screen or {}).get("face_boxes") or [],
    }


def add_review_routes(app: "FastAPI", state: Any) -> None:
    from fastapi import Depends, Form, Request
    from fastapi.responses import HTMLResponse, RedirectResponse, Response

    from caption_agent.policies.verdicts import ReviewDecision, append_decision, pending_items
    from caption_agent.service.schemas import error_responses
    from caption_agent.service.security import COOKIE

    def paths() -> tuple[Path, Path]:
        if state.review_queue is None:
            raise NotReadyError(
                "no review queue is configured.",
                fix="set `review_queue` in the service config (or policy.review_queue).",
            )
        return state.review_queue, state.settings.decisions_path(state.review_queue)

    def auth(request: Request) -> None:
        state.keys.check(request.headers, request.cookies)

    login_form = {"description": "No or wrong API key: the sign-in form", "content": {"text/html": {}}}

    @app.get(
        "/review",
        response_class=HTMLResponse,
        tags=["review"],
        summary="The review page.",
        responses={401: login_form, **error_responses(503)},
    )
    async def review_page(request: Request) -> Any:
        try:
            state.keys.check(request.headers, request.cookies)
        except Exception:  # noqa: BLE001 - any auth failure shows the key form
            return HTMLResponse(render("login.html", failed=bool(request.cookies.get(COOKIE))), status_code=401)
        queue, decisions = paths()
        items = await asyncio.to_thread(pending_items, queue, decisions)
        return HTMLResponse(
            render("review.html", items=[view_item(i) for i in items], queue=str(queue), decisions=str(decisions))
        )

    @app.post(
        "/review/login",
        tags=["review"],
        summary="Trade an API key for a review-page cookie.",
        status_code=303,
        responses={303: {"description": "Back to /review"}, 401: login_form},
    )
    async def review_login(request: Request, key: str = Form(max_length=512)) -> Any:
        if not state.keys.valid(key):
            return HTMLResponse(render("login.html", failed=True), status_code=401)
        reply = RedirectResponse("/review", status_code=303)
        # Secure over TLS: direct, or as a trusted proxy's X-Forwarded-Proto (the HTTP guard sets the scheme).
        secure = request.url.scheme == "https"
        reply.set_cookie(COOKIE, key, httponly=True, secure=secure, samesite="strict", path="/review")
        return reply

    @app.get("/static/{name}", include_in_schema=False)
    async def static_file(name: str) -> Response:
        if name not in _STATIC:
            raise NotFoundError(f"no static file {name!r}.", fix="the page's files are: " + ", ".join(_STATIC) + ".")
        return Response(_static(name), media_type=_STATIC[name], headers={"Cache-Control": "no-cache"})

    @app.get(
        "/review/images/{review_id}",
        tags=["review"],
        dependencies=[Depends(auth)],
        summary="The queued item's image, re-encoded as a JPEG thumbnail.",
        responses={200: {"content": {"image/jpeg": {}}}, **error_responses(401, 404, 503)},
    )
    async def review_image(review_id: str) -> Response:
        queue, _ = paths()
        data = await asyncio.to_thread(_thumbnail, state, queue, review_id)
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})

    @app.post(
        "/review/decisions",
        response_model=DecisionAck,
        tags=["review"],
        dependencies=[Depends(auth)],
        responses=error_responses(401, 404, 409, 422, 503),
        summary="Record a verdict (approve | edit | reject) for a queued item; edits are safety-checked first.",
    )
    async def review_decide(decision: ReviewDecision) -> DecisionAck:
        queue, decisions = paths()
        if decision.verdict == "edit":
            item = await asyncio.to_thread(_waiting_item, queue, decisions, decision.review_id)
            # The policy engine is model work: it runs in the service's single model thread.
            await state.in_model_thread(_check_edit, state.agent, item, decision.text or "")

        def write() -> None:
            _waiting_item(queue, decisions, decision.review_id)
            append_decision(decisions, decision)

        await asyncio.to_thread(write)
        state.metrics.review.labels(decision.verdict).inc()
        return DecisionAck(review_id=decision.review_id, verdict=decision.verdict, decisions_file=str(decisions))


def _waiting_item(queue: Path, decisions: Path, review_id: str) -> dict[str, Any]:
    """The queue item ``review_id`` if it still waits for a verdict; 409 if it has one, 404 if unknown."""
    from caption_agent.policies.review import ReviewQueue
    from caption_agent.policies.verdicts import pending_items

    item = next((i for i in pending_items(queue, decisions) if i.get("review_id") == review_id), None)
    if item is not None:
        return item
    if review_id in ReviewQueue(queue):
        raise ConflictError(f"{review_id} already has a verdict.")
    raise NotFoundError(f"{review_id} is not in the review queue.")


def _check_edit(agent: Any, item: dict[str, Any], text: str) -> None:
    """Refuse an edit that any re-checked rule objects to, even one the policy could fix (PII masked, text
    trimmed): what the reviewer typed is recorded as typed or not at all. ``suggestion`` is the fixed text."""
    from pydantic import ValidationError

    from caption_agent.errors import PolicyError
    from caption_agent.policies.verdicts import check_edit
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
            suggestion=check.text if check.publishable else None,
        )


def _thumbnail(state: Any, queue: Path, review_id: str) -> bytes:
    """Find the item's image (uploaded bytes kept by sha256, else its file path), check its hash, re-encode."""
    import hashlib

    from caption_agent.errors import CaptionAgentError
    from caption_agent.images import load_image
    from caption_agent.policies.review import ReviewQueue

    item = next((i for i in ReviewQueue(queue).items() if i.get("review_id") == review_id), None)
    info = ((item or {}).get("result") or {}).get("image") or {}
    sha = str(info.get("sha256") or "")
    if item is None or len(sha) != 64 or not sha.isalnum():
        raise NotFoundError(f"no image for review item {review_id!r}.")
    candidates = [state.settings.images_path(queue) / sha]
    if info.get("source") and info["source"] != "<bytes>":
        candidates.append(Path(info["source"]))
    for path in candidates:
        if path.is_file():
            data = path.read_bytes()
            if hashlib.sha256(data).hexdigest() != sha:
                continue  # the file changed since it was captioned: not the image the reviewer must judge
            try:
                image, _ = load_image(data, state.agent.config.images)
            except CaptionAgentError:
                continue
            image.thumbnail((_THUMB_PX, _THUMB_PX))
            buf = io.BytesIO()
            image.save(buf, "JPEG", quality=85)
            return buf.getvalue()
    raise NotFoundError(
        f"the image of review item {review_id!r} is no longer available.",
        fix="the original file moved or changed; judge the item from its draft and facts.",
    )
