"""`create_app(config, settings)`: the FastAPI app over one CaptionAgent. Models load once, at start-up.

The app has no captioning logic of its own: requests become CaptionRequests for ``CaptionAgent.caption_batch``
(micro-batched), localization runs the batch job's LocalizeStage, and the review page writes through
``policies.review``. Every error is a JSON body saying what was wrong and how to fix it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, AsyncIterator

from pydantic import ValidationError

from caption_agent._extras import require
from caption_agent.config import AgentConfig
from caption_agent.errors import CaptionAgentError
from caption_agent.service.errors import QueueFullError, body_for, error_body, status_for
from caption_agent.service.settings import ServiceSettings

log = logging.getLogger("caption_agent.service")
_READY_TTL_S = 5.0


class ServiceState:
    """What the routes share: the agent, its single model thread, the batcher, metrics and key checker."""

    def __init__(self, agent: Any, settings: ServiceSettings, owns_agent: bool) -> None:
        from caption_agent.service.metrics import ServiceMetrics
        from caption_agent.service.security import KeyChecker

        self.agent, self.settings, self.owns_agent = agent, settings, owns_agent
        self.metrics = ServiceMetrics()
        self.keys = KeyChecker(settings.api_key_hashes)
        self.executor: ThreadPoolExecutor | None = None
        self.batcher: Any = None
        self.loaded = False
        self.load_error: str | None = None
        self.waiting_localize = 0
        self._ready_cache: tuple[float, dict[str, str]] | None = None
        queue = settings.queue_path(agent.config.policy.review_queue)
        if queue is not None and agent.config.policy.review_queue is None:
            agent.config.policy.review_queue = queue  # the pipeline itself appends results needing review
        self.review_queue: Path | None = queue

    # --- model thread -------------------------------------------------------------------------------------------
    def load_models(self) -> None:
        """Load every stage once; with ``warmup`` also run the drafter on a generated image."""
        agent = self.agent
        _ = agent.drafter, agent.ranker, agent.policy, agent.retriever, agent.refiner
        if self.review_queue is not None:  # the desk's first item view then needs no language profiles loaded
            from caption_agent.policies.review_text import warm_up

            warm_up()
        if self.settings.warmup:
            import io

            import numpy as np
            from PIL import Image

            from caption_agent.images import load_image

            buf = io.BytesIO()
            Image.fromarray(np.random.default_rng(0).integers(0, 255, (96, 96, 3), dtype=np.uint8)).save(buf, "PNG")
            image, info = load_image(buf.getvalue(), agent.config.images)
            agent.drafter.draft([image], [info], 1)

    def run_batch(self, requests: list[Any]) -> list[Any]:
        results: list[Any] = self.agent.caption_batch(requests)
        from caption_agent.service.review import keep_for_review

        keep_for_review(self, requests, results)
        return results

    async def in_model_thread(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    # --- readiness ----------------------------------------------------------------------------------------------
    async def readiness(self) -> dict[str, str]:
        now = time.monotonic()
        if self._ready_cache is not None and now - self._ready_cache[0] < _READY_TTL_S:
            return self._ready_cache[1]
        checks = {"models": "ok" if self.loaded else (self.load_error or "loading")}
        if self.loaded:
            agent = self.agent
            probes: dict[str, Any] = {}
            if agent.retriever is not None:
                probes["store"] = agent.retriever.store.count
            for name in ("drafter", "refiner"):
                stage = getattr(agent, name)
                if stage is not None and hasattr(stage, "check_ready"):
                    probes[name] = stage.check_ready
            for name, probe in probes.items():
                try:
                    await asyncio.wait_for(asyncio.to_thread(probe), timeout=10.0)
                    checks[name] = "ok"
                except Exception as exc:  # noqa: BLE001 - reported, not raised
                    checks[name] = f"{type(exc).__name__}: {exc}"[:300]
        self._ready_cache = (now, checks)
        return checks


def create_app(config: AgentConfig | None = None, settings: ServiceSettings | None = None, *, agent: Any = None) -> Any:
    """Build the app. Pass ``agent`` to share an already built CaptionAgent (it is then not closed)."""
    fastapi = require("fastapi", "serve", "The HTTP service")
    require("python_multipart", "serve", "Multipart uploads", package="python-multipart")
    require("prometheus_client", "serve", "The service's /metrics", package="prometheus_client")
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException as StarletteHTTPException

    from caption_agent.service.batching import MicroBatcher
    from caption_agent.service.docs import add_docs_page
    from caption_agent.service.middleware import (
        SECURITY_HEADERS,
        BodyGuardMiddleware,
        HttpGuardMiddleware,
        MetricsMiddleware,
    )
    from caption_agent.service.review import add_review_routes
    from caption_agent.service.routes import add_api_routes, add_docs_routes, install_openapi

    settings = settings or ServiceSettings.load()
    owns = agent is None
    if agent is None:
        from caption_agent.pipeline import CaptionAgent

        agent = CaptionAgent(config or AgentConfig.load())
    state = ServiceState(agent, settings, owns)

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
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
                agent.close()

    app = fastapi.FastAPI(
        title="caption-agent",
        version=_version(),
        lifespan=lifespan,
        description="Caption images (draft, rank, ground, refine, moderate) over HTTP.",
        docs_url=None,  # served by add_docs_routes, with a Content-Security-Policy of their own
        redoc_url=None,
    )
    app.state.service = state

    def on_error(request: Any, exc: Exception) -> Any:
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

    def on_validation(request: Any, exc: Any) -> Any:  # fastapi's RequestValidationError
        errors = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")} for e in exc.errors()
        ]
        where = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in errors[:5])
        request.state.error_type = "RequestValidationError"
        return JSONResponse(
            error_body(
                422,
                "RequestValidationError",
                f"the request is invalid: {where}",
                "correct the fields listed in `errors`; the schema is at /docs.",
                errors=errors,
            ),
            status_code=422,
        )

    def on_http(request: Any, exc: Any) -> Any:
        fixes = {
            404: "check the path; the endpoints are listed at /docs.",
            405: "check the HTTP method; the endpoints are listed at /docs.",
        }
        request.state.error_type = f"HTTP{exc.status_code}"
        message, fix = str(exc.detail), fixes.get(exc.status_code, "")
        if exc.status_code == 400 and message == "There was an error parsing the body":  # fastapi's words
            cause = exc.__cause__
            if isinstance(cause, UnicodeDecodeError):
                bad = cause.object[cause.start : cause.start + 1]
                message = f"the request body is not valid UTF-8 (byte {cause.start} is {bad!r})."
                fix = "send the body as JSON text encoded in UTF-8 (escape other characters as \\uXXXX)."
            else:
                message = f"the request body could not be read ({type(cause).__name__ if cause else 'unknown error'})."
                fix = "send JSON text encoded in UTF-8 with Content-Type: application/json; the schema is at /docs."
        return JSONResponse(
            error_body(exc.status_code, f"HTTP{exc.status_code}", message, fix),
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    app.add_exception_handler(CaptionAgentError, on_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(ValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_error)
    add_api_routes(app, state)
    add_review_routes(app, state)
    add_docs_routes(app)
    add_docs_page(app)
    install_openapi(app)
    # Added innermost first: metrics see every answer; the guard refuses foreign hosts/origins before any body is read.
    app.add_middleware(BodyGuardMiddleware, max_bytes=settings.max_body_bytes, timeout_s=settings.body_timeout_s)
    app.add_middleware(HttpGuardMiddleware, hosts=settings.host_names(), trusted_proxies=settings.trusted_proxies)
    app.add_middleware(MetricsMiddleware, metrics=state.metrics)
    return app


def _version() -> str:
    from caption_agent import __version__

    return __version__
