"""The JSON API router: POST /v1/captions, POST /v1/localize, GET /v1/styles, /healthz, /readyz, /metrics; and the
OpenAPI and /redoc pages of the app."""

# No `from __future__ import annotations`: FastAPI reads the route signatures. The module imports fastapi:
# only create_app imports it, after checking the `serve` extra.

import asyncio
import base64
import binascii
import time
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from caption_agent.schemas import CaptionResult
from caption_agent.service.deps import State, api_key
from caption_agent.service.errors import (
    BadRequestError,
    NotReadyError,
    PayloadTooLargeError,
    QueueFullError,
    RequestTimeoutError,
    UnsupportedMediaTypeError,
    error_body,
    status_for_record,
)
from caption_agent.service.schemas import (
    CaptionFields,
    CaptionJSON,
    CaptionMultipart,
    Health,
    LocalizeBody,
    LocalizeResponse,
    Readiness,
    StyleInfo,
    StylesResponse,
    error_responses,
)

_CAPTION_ERRORS = error_responses(401, 403, 409, 413, 415, 422, 429, 502, 503, 504)
_FORM_FIELDS = set(CaptionFields.model_fields)

router = APIRouter()


def json_only(request: Request) -> None:  # runs before FastAPI validates the body: 415, not 422
    if media_type(request) != "application/json":
        raise unsupported(media_type(request), "application/json")


@router.get("/healthz", response_model=Health, tags=["ops"], summary="Liveness: the process answers.")
async def healthz() -> Health:
    return Health(status="alive")


@router.get(
    "/readyz",
    response_model=Readiness,
    tags=["ops"],
    responses={503: {"model": Readiness}},
    summary="Readiness: models loaded, catalog store and LLM/VLM servers reachable.",
)
async def readyz(state: State) -> Any:
    checks = await state.readiness()
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse(Readiness(ready=ready, checks=checks).model_dump(), status_code=200 if ready else 503)


@router.get(
    "/metrics",
    tags=["ops"],
    summary="Prometheus metrics.",
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
async def metrics(state: State) -> Response:
    data, ctype = state.metrics.render()
    return Response(data, media_type=ctype)


@router.get(
    "/v1/styles",
    response_model=StylesResponse,
    tags=["captions"],
    dependencies=[Depends(api_key)],
    responses=error_responses(401),
    summary="The style presets a request may name.",
)
async def styles(state: State) -> StylesResponse:
    from caption_agent.prompts import list_styles

    found = list_styles(state.agent.config.prompts_dir)
    return StylesResponse(
        default=state.agent.config.default_style,
        styles=[
            StyleInfo(
                name=p.name, version=p.version, description=p.description, max_chars=p.max_chars, use_facts=p.use_facts
            )
            for p in found.values()
        ],
    )


@router.post(
    "/v1/captions",
    response_model=CaptionResult,
    response_model_exclude_none=True,
    tags=["captions"],
    dependencies=[Depends(api_key)],
    responses=_CAPTION_ERRORS,
    openapi_extra={"x-caption-body": True},
    summary="Caption one image (multipart field `image`, or JSON with image_base64 / image_url).",
)
async def captions(request: Request, state: State) -> Any:
    require_ready(state)
    # One deadline for the whole request: reading the body, downloading image_url, waiting and captioning.
    loop = asyncio.get_running_loop()
    deadline = loop.time() + state.settings.request_timeout_s
    try:
        async with asyncio.timeout_at(deadline):
            fields, image = await _read_caption_body(request, state)
    except TimeoutError:
        raise RequestTimeoutError(
            f"the request did not complete within the {state.settings.request_timeout_s:g} s request timeout "
            "(the body and image_url download count)."
        ) from None
    # The style, locale and image are checked by the pipeline: a bad one comes back as the result's error record.
    caption_request = state.agent.make_request(
        image,
        style=fields.style,
        locale=fields.locale,
        sku=fields.sku,
        brand=fields.brand,
        category=fields.category,
        n_candidates=fields.n_candidates,
        max_chars=fields.max_chars,
    )
    caption_request.key = fields.key
    result = await state.batcher.submit(caption_request, deadline - loop.time())
    state.metrics.observe_result(result)
    if result.status == "error":
        status, body = result_error(result)
        request.state.error_type = result.error.type
        return JSONResponse(body, status_code=status)
    return result


@router.post(
    "/v1/localize",
    response_model=LocalizeResponse,
    response_model_exclude_none=True,
    tags=["captions"],
    dependencies=[Depends(api_key), Depends(json_only)],
    responses=error_responses(401, 409, 413, 415, 422, 429, 502, 503, 504),
    summary="Rewrite an existing caption into other locales (refined and moderated per locale).",
)
async def localize(body: LocalizeBody, request: Request, state: State) -> Any:
    require_ready(state)
    from caption_agent.service.localize import catalog_facts, localize_for, localize_items

    if body.sku and not body.facts and state.agent.retriever is not None:  # the service's own catalog
        body = body.model_copy(update={"facts": await state.in_model_thread(catalog_facts, state.agent, body.sku)})
    items = localize_items(body, state.agent.config, state.settings)
    if state.waiting_localize >= state.settings.queue_size:
        raise QueueFullError(
            f"too many localization requests waiting ({state.waiting_localize}).",
            retry_after_s=state.batcher.retry_after_s() + len(items),
        )
    state.waiting_localize += 1
    t0 = time.perf_counter()
    try:
        records = await localize_for(request, state, items)  # 504 past the deadline; stops when the caller goes
    finally:
        state.waiting_localize -= 1
    state.metrics.stage.labels("localize").observe(time.perf_counter() - t0)
    results = [CaptionResult.model_validate(r) for r in records]
    failed = [r for r in results if r.status == "error"]
    if failed and len(failed) == len(results):
        status, payload = result_error(failed[0])
        return JSONResponse(payload, status_code=status)
    return LocalizeResponse(results=results)


async def _read_caption_body(request: Any, state: Any) -> tuple[CaptionFields, bytes]:
    """Parse the JSON or multipart body into options and image bytes (URLs fetched with the SSRF checks)."""
    from starlette.datastructures import UploadFile

    kind = media_type(request)
    limit = state.agent.config.images.max_bytes
    if kind == "application/json":
        raw = await request.body()
        try:
            body = CaptionJSON.model_validate_json(raw)
        except ValidationError as exc:
            from fastapi.exceptions import RequestValidationError

            raise RequestValidationError(exc.errors(include_url=False)) from None
        if body.image_url is not None:
            from caption_agent.service.security import fetch_image

            s = state.settings
            image = await fetch_image(
                body.image_url,
                allowlist=s.url_allowlist,
                allow_private=s.allow_private_urls,
                max_bytes=limit,
                timeout_s=s.url_timeout_s,
            )
        else:
            image = decode_base64(body.image_base64 or "")
        fields = CaptionFields.model_validate(body.model_dump(include=_FORM_FIELDS))
    elif kind == "multipart/form-data":
        try:
            form = await request.form(max_files=1, max_fields=len(_FORM_FIELDS) + 1)
        except Exception as exc:  # noqa: BLE001 - python-multipart's parse errors have no common base
            raise BadRequestError(f"the multipart body could not be parsed: {exc}.") from None
        upload = form.get("image")
        if not isinstance(upload, UploadFile):
            raise BadRequestError(
                "multipart field `image` (a file) is missing.",
                fix="send the image file in a multipart field named `image`.",
            )
        image = await upload.read()
        unknown = sorted(set(form.keys()) - _FORM_FIELDS - {"image"})
        if unknown:
            raise BadRequestError(
                f"unknown form field(s): {', '.join(unknown)}.",
                fix=f"use only: image, {', '.join(sorted(_FORM_FIELDS))}.",
            )
        try:
            fields = CaptionFields.model_validate({k: v for k, v in form.items() if k != "image" and v != ""})
        except ValidationError as exc:
            from fastapi.exceptions import RequestValidationError

            raise RequestValidationError(exc.errors(include_url=False)) from None
    else:
        raise unsupported(kind, "multipart/form-data (field `image`) or application/json")
    if len(image) > limit:
        raise PayloadTooLargeError(f"the image is {len(image)} bytes, over the limit of {limit}.")
    return fields, image


def decode_base64(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadRequestError(
            f"image_base64 is not valid base64: {exc}.",
            fix="send the image file's bytes base64-encoded (standard alphabet, with padding).",
        ) from None


def require_ready(state: Any) -> None:
    if not state.loaded:
        raise NotReadyError(f"the models are not loaded ({state.load_error or 'still loading'}).")


def result_error(result: Any) -> tuple[int, dict[str, Any]]:
    """Status and body for a result whose status is 'error' (the pipeline's error record)."""
    record = result.error
    message, _, fix = record.message.partition(" Fix: ")
    status = status_for_record(record.type, record.stage)
    return status, error_body(status, record.type, message, fix, stage=record.stage)


def media_type(request: Any) -> str:
    value = str(request.headers.get("content-type", ""))
    return value.split(";", 1)[0].strip().lower()


def unsupported(kind: str, allowed: str) -> UnsupportedMediaTypeError:
    return UnsupportedMediaTypeError(f"content type {kind or '(none)'!r} is not accepted here; use {allowed}.")


def install_openapi(app: Any) -> None:
    """Document POST /v1/captions' two body forms (parsed by hand so one route takes both)."""
    from pydantic.json_schema import models_json_schema

    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return dict(app.openapi_schema)
        spec: dict[str, Any] = original()
        _, defs = models_json_schema(
            [(CaptionJSON, "validation"), (CaptionMultipart, "validation")], ref_template="#/components/schemas/{model}"
        )
        spec.setdefault("components", {}).setdefault("schemas", {}).update(defs.get("$defs", {}))
        op = spec["paths"]["/v1/captions"]["post"]
        op.pop("x-caption-body", None)
        op["requestBody"] = {
            "required": True,
            "content": {
                "multipart/form-data": {"schema": {"$ref": "#/components/schemas/CaptionMultipart"}},
                "application/json": {"schema": {"$ref": "#/components/schemas/CaptionJSON"}},
            },
        }
        app.openapi_schema = spec
        return spec

    app.openapi = openapi


def add_docs_routes(app: FastAPI) -> None:
    """/redoc, as FastAPI builds it, with a Content-Security-Policy that admits its CDN and, by hash, its inline
    script (the service's own policy allows no inline script). /docs is served offline (service/docs.py)."""
    import hashlib
    import re

    from fastapi.openapi.docs import get_redoc_html
    from fastapi.responses import HTMLResponse

    spec = app.openapi_url or "/openapi.json"
    pages = {"/redoc": get_redoc_html(openapi_url=spec, title=f"{app.title} - ReDoc")}
    for path, page in pages.items():
        html = bytes(page.body).decode("utf-8")
        inline = re.findall(r"<script>(.*?)</script>", html, flags=re.S)
        hashes = " ".join(
            "'sha256-" + base64.b64encode(hashlib.sha256(code.encode("utf-8")).digest()).decode() + "'"
            for code in inline
        )
        csp = (
            f"default-src 'none'; script-src https://cdn.jsdelivr.net {hashes}; "
            "style-src 'unsafe-inline' https://cdn.jsdelivr.net https://fonts.googleapis.com; "
            "font-src https://fonts.gstatic.com; "
            "img-src 'self' data: https://fastapi.tiangolo.com https://cdn.redoc.ly; "
            "connect-src 'self'; worker-src blob:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
        )

        app.add_api_route(path, _page_endpoint(HTMLResponse, html, csp), methods=["GET"], include_in_schema=False)


def _page_endpoint(response_class: Any, html: str, csp: str) -> Any:
    """An endpoint without parameters (FastAPI would read any parameter from the query string) serving ``html``."""

    def serve_page() -> Any:
        return response_class(html, headers={"Content-Security-Policy": csp})

    return serve_page
