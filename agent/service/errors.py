"""Service errors and the one mapping from any CaptionAgentError to an HTTP status and a JSON body."""

from __future__ import annotations

from typing import Any

from caption_agent.errors import (
    BackendError,
    BackendUnavailableError,
    CaptionAgentError,
    ConfigError,
    ImageTooLargeError,
    InvalidImageError,
    InvalidLocaleError,
    UnknownSkuError,
    UnknownStyleError,
)
from caption_agent.urls import ImageFetchError, UrlNotAllowedError


class ServiceError(CaptionAgentError):
    """Base of errors raised by the HTTP layer itself; ``status`` is the HTTP status."""

    status = 400


class AuthError(ServiceError):
    status = 401
    fix = "send a valid API key as `Authorization: Bearer KEY` or `X-API-Key: KEY`."


class HostNotAllowedError(ServiceError):
    """The request's Host header names a host this service does not answer to (DNS rebinding, misrouting)."""

    status = 400
    fix = (
        "address the service by one of its names; the operator adds names to `allowed_hosts` in the service "
        "config (docs/service.md, section Behind a proxy)."
    )


class ForeignOriginError(ServiceError):
    """A state-changing request came from another site's page (its Origin or Referer is not this service)."""

    status = 403
    fix = (
        "post from this service's own pages, or from a client that sends no Origin header (CLI, curl, SDKs); "
        "behind a TLS proxy the operator sets `trusted_proxies` so the service knows its public scheme."
    )


class BodyTimeoutError(ServiceError):
    status = 408
    fix = "send the whole request body within `body_timeout_s` (service config), or send a smaller body."


class PayloadTooLargeError(ServiceError):
    status = 413
    fix = "send a smaller image (downscale or recompress it); the limit is `max_body_bytes` in the service config."


class UnsupportedMediaTypeError(ServiceError):
    status = 415
    fix = (
        "send multipart/form-data with the file in field `image`, or application/json with `image_base64` "
        "or `image_url`."
    )


class BadRequestError(ServiceError):
    status = 422
    fix = "see the OpenAPI spec at /docs for the request schema."


class EditRefusedError(ServiceError):
    """A reviewer's edited caption failed the safety re-check; ``rules`` are the objecting decisions."""

    status = 422

    def __init__(self, message: str, *, fix: str, rules: list[dict[str, str]], suggestion: str | None) -> None:
        self.extra: dict[str, Any] = {"rules": rules}
        if suggestion is not None:
            self.extra["suggestion"] = suggestion
        super().__init__(message, fix=fix)


class ConflictError(ServiceError):
    status = 409
    fix = "reload the review page: this item already has a verdict."


class NotFoundError(ServiceError):
    status = 404
    fix = "reload the review page to see the items waiting now."


class QueueFullError(ServiceError):
    status = 429
    fix = "retry after the number of seconds in the Retry-After header, or send fewer requests at once."

    def __init__(self, message: str, *, retry_after_s: int) -> None:
        self.retry_after_s = retry_after_s
        super().__init__(message)


class RequestTimeoutError(ServiceError):
    status = 504
    fix = "retry later, or ask the operator to raise `request_timeout_s` / add capacity."


class NotReadyError(ServiceError):
    status = 503
    fix = "wait until GET /readyz answers 200; the models may still be loading or a backend is down."


_BY_TYPE: list[tuple[type[Exception], int]] = [
    (UrlNotAllowedError, 403),
    (ImageFetchError, 422),
    (ImageTooLargeError, 413),
    (InvalidImageError, 422),
    (UnknownStyleError, 422),
    (InvalidLocaleError, 422),
    (UnknownSkuError, 422),
    (BackendUnavailableError, 503),
    (BackendError, 502),
    (ConfigError, 409),
]
_BY_NAME = {cls.__name__: status for cls, status in _BY_TYPE}


def status_for(exc: BaseException) -> int:
    """HTTP status of an exception: ServiceError says it; library errors map by class; anything else is 500."""
    if isinstance(exc, ServiceError):
        return exc.status
    for cls, status in _BY_TYPE:
        if isinstance(exc, cls):
            return status
    return 400 if isinstance(exc, CaptionAgentError) else 500


def status_for_record(error_type: str, stage: str) -> int:
    """HTTP status of a result's error record (the pipeline turns exceptions into records)."""
    if error_type in _BY_NAME:
        return _BY_NAME[error_type]
    return 422 if stage == "input" else 502


def error_body(status: int, error_type: str, message: str, fix: str = "", **extra: Any) -> dict[str, Any]:
    """The JSON every error response carries: what was wrong and how to fix it."""
    return {"error": {"status": status, "type": error_type, "message": message, "fix": fix, **extra}}


def body_for(exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, CaptionAgentError):
        return error_body(status_for(exc), type(exc).__name__, exc.reason, exc.fix, **getattr(exc, "extra", {}))
    return error_body(
        500,
        "InternalError",
        "the server failed while handling this request; it has been logged.",
        "retry; if it keeps failing, report it with the time of the request.",
    )
