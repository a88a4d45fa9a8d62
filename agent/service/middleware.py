"""ASGI middleware: the HTTP guard (Host names, foreign origins, credentials in URLs, security headers, trusted
proxies), the request body guard (size and time limits) and per-request metrics; and the server-side deadline on
request headers (``header_deadline_protocol``), which no ASGI middleware can see."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import time
from typing import Any, Iterable
from urllib.parse import parse_qsl, urlsplit

from caption_agent.service.errors import (
    AuthError,
    BodyTimeoutError,
    ForeignOriginError,
    HostNotAllowedError,
    PayloadTooLargeError,
    ServiceError,
    body_for,
)
from caption_agent.service.security import host_allowed, refuse_key_in_url

Scope = dict[str, Any]

# No inline script or style anywhere: the pages load /static/review.js and /static/review.css. The API docs pages
# send their own policy (routes.add_docs_routes); a response that already carries one keeps it.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    # same-origin, not no-referrer: under no-referrer browsers send `Origin: null` on the page's own POSTs.
    "Referrer-Policy": "same-origin",
}
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_DEFAULT_PORTS = {"http": 80, "https": 443}


async def _send_error(send: Any, scope: Scope, error: ServiceError) -> None:
    """Answer ``error`` as the service's JSON error body and close the connection."""
    scope.setdefault("state", {})["error_type"] = type(error).__name__
    data = json.dumps(body_for(error)).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(data)).encode()),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": data})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers") or ():
        if key == name:
            return bytes(value).decode("latin-1")
    return None


def split_host(value: str) -> tuple[str, int | None] | None:
    """(name, port) of a Host header value ('example.com', 'example.com:8000', '[::1]:8000'); None if malformed."""
    parts = urlsplit("//" + value.strip())
    try:
        name, port = parts.hostname, parts.port
    except ValueError:
        return None
    if not name or parts.username is not None or parts.path or parts.query or parts.fragment:
        return None
    return name.rstrip("."), port


class HttpGuardMiddleware:
    """Runs before routing, on every request:

    - ``X-Forwarded-Proto`` from a peer in ``trusted_proxies`` sets the request's scheme (for Secure cookies and
      the origin check); from anyone else it is ignored.
    - The Host header must name this service (``hosts``): a DNS-rebinding page on another name gets 400, and so
      does a request with two Host headers (a proxy and this service could each read another one).
    - A query parameter named like a credential (``security.URL_KEY_NAMES``, folded) gets 401, on every route.
    - A state-changing request (not GET/HEAD/OPTIONS) whose Origin, or else Referer, is not this service's own
      origin gets 403. Requests with neither (CLI, curl, SDKs) pass.
    - Every answer, errors included, carries SECURITY_HEADERS (a header the response set itself is kept).
    """

    def __init__(self, app: Any, *, hosts: Iterable[str], trusted_proxies: Iterable[str]) -> None:
        self.app = app
        self.hosts = list(hosts)
        self.proxies = [ipaddress.ip_network(p, strict=False) for p in trusted_proxies]

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def secured_send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or [])
                present = {bytes(k).lower() for k, _ in headers}
                for name, value in SECURITY_HEADERS.items():
                    if name.lower().encode() not in present:
                        headers.append((name.lower().encode(), value.encode()))
                message = {**message, "headers": headers}
            await send(message)

        self._apply_proxy(scope)
        hosts = sum(1 for key, _ in scope.get("headers") or () if key == b"host")
        if hosts > 1:
            await _send_error(
                secured_send,
                scope,
                HostNotAllowedError(
                    f"the request carries {hosts} Host headers; one request names one host.",
                    fix="send exactly one Host header (check the proxy in front of the service).",
                ),
            )
            return
        try:
            query = bytes(scope.get("query_string") or b"").decode("latin-1")
            refuse_key_in_url(name for name, _ in parse_qsl(query, keep_blank_values=True))
        except AuthError as exc:
            await _send_error(secured_send, scope, exc)
            return
        host = split_host(_header(scope, b"host") or "")
        if host is None or not ("*" in self.hosts or host_allowed(host[0], self.hosts)):
            shown = (_header(scope, b"host") or "")[:100]
            await _send_error(
                secured_send, scope, HostNotAllowedError(f"this service does not answer to Host {shown!r}.")
            )
            return
        if scope.get("method", "GET") not in _SAFE_METHODS:
            foreign = self._foreign_source(scope, host)
            if foreign is not None:
                await _send_error(
                    secured_send,
                    scope,
                    ForeignOriginError(f"a state-changing request from another site was refused ({foreign})."),
                )
                return
        await self.app(scope, receive, secured_send)

    def _apply_proxy(self, scope: Scope) -> None:
        client = scope.get("client")
        proto = _header(scope, b"x-forwarded-proto")
        if not (client and proto and self.proxies):
            return
        try:
            peer = ipaddress.ip_address(client[0])
        except ValueError:
            return
        if any(peer in net for net in self.proxies):
            # The last value is the one our proxy added; earlier ones came from whoever called it.
            value = proto.rsplit(",", 1)[-1].strip().lower()
            if value in _DEFAULT_PORTS:
                scope["scheme"] = value

    def _foreign_source(self, scope: Scope, host: tuple[str, int | None]) -> str | None:
        """A description of the request's foreign Origin/Referer, or None when it is this service or absent."""
        scheme = scope.get("scheme", "http")
        own = (scheme, host[0].lower(), host[1] or _DEFAULT_PORTS.get(scheme))
        for name in (b"origin", b"referer"):
            value = _header(scope, name)
            if value is None:
                continue
            parts = urlsplit(value.strip())
            try:
                port = parts.port or _DEFAULT_PORTS.get(parts.scheme)
            except ValueError:
                port = None
            seen = (parts.scheme, (parts.hostname or "").rstrip("."), port)
            if seen != own:
                return f"{name.decode().title()} {value[:100]!r} is not {own[0]}://{_netloc(own[1], own[2])}"
            return None  # an Origin that matches decides; a Referer is only consulted without one
        return None


def _netloc(name: str, port: int | None) -> str:
    return f"[{name}]:{port}" if ":" in name else f"{name}:{port}"


class BodyGuardMiddleware:
    """Limits each request body: over ``max_bytes`` -> 413 (from Content-Length up front, or counted while a
    chunked body streams); not complete within ``timeout_s`` of its first read -> 408. Once the body has failed,
    that failure is the answer, whatever the app made of the failed read (a form parser reports a parse error)."""

    def __init__(self, app: Any, *, max_bytes: int, timeout_s: float) -> None:
        self.app, self.max_bytes, self.timeout_s = app, max_bytes, timeout_s

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = f"the request body is over the limit of {self.max_bytes} bytes."
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await _send_error(send, scope, PayloadTooLargeError(too_large))
            return
        loop = asyncio.get_running_loop()
        seen, deadline, complete = 0, 0.0, False
        failure: ServiceError | None = None
        started = replaced = False

        async def guarded_receive() -> dict[str, Any]:
            nonlocal seen, deadline, complete, failure
            if failure is not None:
                raise failure
            if complete:  # later reads wait for the disconnect: no deadline on those
                passed: dict[str, Any] = await receive()
                return passed
            deadline = deadline or loop.time() + self.timeout_s
            try:
                async with asyncio.timeout_at(deadline):
                    message: dict[str, Any] = await receive()
            except TimeoutError:
                failure = BodyTimeoutError(f"the request body did not arrive within {self.timeout_s:g} s.")
                raise failure from None
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                complete = not message.get("more_body", False)
                if seen > self.max_bytes:
                    failure = PayloadTooLargeError(too_large)
                    raise failure
            return message

        async def guarded_send(message: dict[str, Any]) -> None:
            nonlocal started, replaced
            if failure is not None and not started:
                started = replaced = True
                await _send_error(send, scope, failure)  # instead of whatever the app answered
            if not replaced:
                started = started or message["type"] == "http.response.start"
                await send(message)

        try:
            await self.app(scope, guarded_receive, guarded_send)
        except Exception:
            if failure is None:
                raise
            # The app gave up on the failed read: answer the failure itself if nothing was sent yet.
            if not started:
                await _send_error(send, scope, failure)


class MetricsMiddleware:
    """Counts requests by route template and status, and times them."""

    def __init__(self, app: Any, metrics: Any) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        t0 = time.perf_counter()

        async def recording_send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            route = scope.get("route")
            label = getattr(route, "path", None) or "unmatched"
            self.metrics.requests.labels(label, scope.get("method", ""), str(status)).inc()
            self.metrics.latency.labels(label).observe(time.perf_counter() - t0)
            error_type = scope.get("state", {}).get("error_type")
            if status >= 400:
                self.metrics.errors.labels(label, error_type or f"HTTP{status}").inc()


def header_deadline_protocol(seconds: float, http: str = "auto") -> type:
    """uvicorn's HTTP protocol class (``http``: auto | h11 | httptools) with a deadline on request headers.

    uvicorn closes idle keep-alive connections but has no limit on the time a request's headers take: a client
    sending one header byte every few seconds holds its connection (and a file descriptor) forever. This class
    starts a timer when a connection opens and after each response; when it fires and no new request's headers
    have arrived (the protocol starts a new request cycle only once the headers are complete, in h11 and
    httptools alike), the connection is closed. Pass it as ``uvicorn.run(..., http=CLASS)``."""
    from uvicorn.config import HTTP_PROTOCOLS
    from uvicorn.importer import import_from_string

    base: type = import_from_string(HTTP_PROTOCOLS[http])

    class HeaderDeadlineProtocol(base):
        _head_timer: asyncio.TimerHandle | None = None
        _head_cycle: Any = None

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._arm_head_deadline()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm_head_deadline()

        def connection_lost(self, exc: Exception | None) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None
            super().connection_lost(exc)

        def _arm_head_deadline(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
            self._head_timer = None
            if not self.transport.is_closing():
                self._head_cycle = self.cycle
                self._head_timer = self.loop.call_later(seconds, self._head_expired)

        def _head_expired(self) -> None:
            self._head_timer = None
            cycle = self.cycle
            waiting = cycle is self._head_cycle and (cycle is None or cycle.response_complete)
            upgraded = self.transport.get_protocol() is not self  # a WebSocket took the connection over
            if waiting and not upgraded and not self.transport.is_closing():
                self.transport.close()

    HeaderDeadlineProtocol.__name__ = f"HeaderDeadline{base.__name__}"
    return HeaderDeadlineProtocol
