"""`create_app(config, settings)`: the FastAPI app over one CaptionAgent. Models load once, at start-up.

The app has no captioning logic of its own: requests become CaptionRequests for ``CaptionAgent.caption_batch``
(micro-batched), localization runs the library's localization, and the review page writes through
``policies.review``. The routes are module-level routers (``routes``, ``review``, ``review_api``) that reach the
shared ``ServiceState`` through ``deps.State``; this module assembles them. Every error is a JSON body saying what
was wrong and how to fix it.
"""

from __future__ import annotations

import contextlib
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any, AsyncIterator

from pydantic import ValidationError

from caption_agent._extras import require
from caption_agent.config import AgentConfig
from caption_agent.errors import CaptionAgentError
from caption_agent.service.errors import QueueFullError, body_for, error_body, status_for
from caption_agent.service.settings import ServiceSettings
from caption_agent.service.state import ServiceState

log = logging.getLogger("caption_agent.service")


def create_app(config: AgentConfig | None = None, settings: ServiceSettings | None = None, *, agent: Any = None) -> Any:
    """Build the app. Pass ``agent`` to share an already built CaptionAgent (it is then not closed)."""
    fastapi = require("fastapi", "serve", "The HTTP service")
    require("python_multipart", "serve", "Multipart uploads", package="python-multipart")
    require("prometheus_client", "serve", "The service's /metrics", package="prometheus_client")
    from caption_agent.service import review, review_api, routes
    from caption_agent.service.docs import add_docs_page

    settings = settings or ServiceSettings.load()
    owns = agent is None
    if agent is None:
        from caption_agent.pipeline import CaptionAgent

        agent = CaptionAgent(config or AgentConfig.load())
    state = ServiceState(agent, settings, owns)
    app = fastapi.FastAPI(
        title="caption-agent",
        version=_version(),
        lifespan=_lifespan(state),
        description="Caption images (draft, rank, ground, refine, moderate) over HTTP.",
        docs_url=None,  # served by add_docs_routes, with a Content-Security-Policy of their own
        redoc_url=None,
    )
    app.state.service = state
    _add_error_handlers(app)
    for router in (routes.router, review.router, review_api.router):
        app.include_router(router)
    routes.add_docs_routes(app)
    add_docs_page(app)
    routes.install_openapi(app)
    _add_middleware(app, settings, state)
    return app


def _lifespan(state: ServiceState) -> Any:
    """Start-up: the single model thread loads the models, then the micro-batcher starts; shutdown reverses it."""
    from caption_agent.service.batching import MicroBatcher

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        settings = state.settings
        state.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="caption-model")
        try:
            await state.in_model_thread(state.load_models)
            state.loaded = True
        except CaptionAgentError as exc:
            state.load_error = str(exc)
            log.error("model loading failed: %s", exc)
        state.batcher = MicroBatcher(
            state.run_batch,
            state.executor,
            queue_size=settings.queue_size,
            max_batch=settings.max_batch,
            window_s=settings.batch_window_ms / 1000.0,
            metrics=state.metrics,
        )
        state.batcher.start()
        try:
            yield
        finally:
            await state.batcher.stop()
            state.executor.shutdown(wait=True)
            if state.owns_agent:
                state.agent.close()

    return lifespan


def _add_error_handlers(app: Any) -> None:
    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException as StarletteHTTPException

    app.add_exception_handler(CaptionAgentError, on_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(ValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_error)


def _add_middleware(app: Any, settings: ServiceSettings, state: ServiceState) -> None:
    from caption_agent.service.middleware import BodyGuardMiddleware, HttpGuardMiddleware, MetricsMiddleware

    # Added innermost first: metrics see every answer; the guard refuses foreign hosts/origins before any body is read.
    app.add_middleware(BodyGuardMiddleware, max_bytes=settings.max_body_bytes, timeout_s=settings.body_timeout_s)
    app.add_middleware(HttpGuardMiddleware, hosts=settings.host_names(), trusted_proxies=settings.trusted_proxies)
    app.add_middleware(MetricsMiddleware, metrics=state.metrics)


def on_error(request: Any, exc: Exception) -> Any:
    from fastapi.responses import JSONResponse

    from caption_agent.service.middleware import SECURITY_HEADERS

    status = status_for(exc)
    if status >= 500 and not isinstance(exc, CaptionAgentError):
        log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    request.state.error_type = (
        type(exc).__name__ if status < 500 or isinstance(exc, CaptionAgentError) else "InternalError"
    )
    # Unexpected errors are answered outside the middleware stack: the security headers are added here.
    headers = {**SECURITY_HEADERS}
    if isinstance(exc, QueueFullError):
        headers["Retry-After"] = str(exc.retry_after_s)
    return JSONResponse(body_for(exc), status_code=status, headers=headers)


def on_validation(request: Any, exc: Any) -> Any:  # fastapi's RequestValidationError or pydantic's ValidationError
    from fastapi.responses import JSONResponse

    errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")} for e in exc.errors()]
    where = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in errors[:5])
    request.state.error_type = "RequestValidationError"
    body = error_body(
        422,
        "RequestValidationError",
        f"the request is invalid: {where}",
        "correct the fields listed in `errors`; the schema is at /docs.",
        errors=errors,
    )
    return JSONResponse(body, status_code=422)


_HTTP_FIXES = {
    404: "check the path; the endpoints are listed at /docs.",
    405: "check the HTTP method; the endpoints are listed at /docs.",
}


def on_http(request: Any, exc: Any) -> Any:  # starlette's HTTPException
    from fastapi.responses import JSONResponse

    request.state.error_type = f"HTTP{exc.status_code}"
    message, fix = str(exc.detail), _HTTP_FIXES.get(exc.status_code, "")
    if exc.status_code == 400 and message == "There was an error parsing the body":  # fastapi's words
        message, fix = _unreadable_body(exc.__cause__)
    return JSONResponse(
        error_body(exc.status_code, f"HTTP{exc.status_code}", message, fix),
        status_code=exc.status_code,
        headers=getattr(exc, "headers", None),
    )


def _unreadable_body(cause: BaseException | None) -> tuple[str, str]:
    if isinstance(cause, UnicodeDecodeError):
        bad = cause.object[cause.start : cause.start + 1]
        return (
            f"the request body is not valid UTF-8 (byte {cause.start} is {bad!r}).",
            "send the body as JSON text encoded in UTF-8 (escape other characters as \\uXXXX).",
        )
    return (
        f"the request body could not be read ({type(cause).__name__ if cause else 'unknown error'}).",
        "send JSON text encoded in UTF-8 with Content-Type: application/json; the schema is at /docs.",
    )


def _version() -> str:
    from caption_agent import __version__

    return __version__
