"""`caption-agent serve`: run the HTTP service with uvicorn (FastAPI and uvicorn are imported lazily)."""

from __future__ import annotations

import errno
import socket
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from caption_agent.errors import CaptionAgentError
from caption_agent.usage import BaseUrlOpt, CatalogOpt, ModelOpt, RefinerOpt, VlmOpt, VlmUrlOpt

HostOpt = Annotated[Optional[str], typer.Option(help="Bind address (default 127.0.0.1: loopback only).")]
PortOpt = Annotated[Optional[int], typer.Option(help="TCP port (default 8000).")]
AgentConfigOpt = Annotated[Optional[Path], typer.Option("--config", "-c", help="Agent TOML config file.")]
ServiceConfigOpt = Annotated[Optional[Path], typer.Option(help="Service TOML config file (keys, limits, queue).")]
ReviewQueueOpt = Annotated[Optional[Path], typer.Option(help="Review queue JSONL served at /review.")]
HashKeyOpt = Annotated[
    bool,
    typer.Option("--hash-key", help="Read an API key from stdin (or make a new one), print its config hash, and exit."),
]


def serve(
    host: HostOpt = None,
    port: PortOpt = None,
    config: AgentConfigOpt = None,
    service_config: ServiceConfigOpt = None,
    catalog: CatalogOpt = None,
    refiner: RefinerOpt = None,
    model: ModelOpt = None,
    base_url: BaseUrlOpt = None,
    vlm: VlmOpt = None,
    vlm_url: VlmUrlOpt = None,
    review_queue: ReviewQueueOpt = None,
    hash_key: HashKeyOpt = False,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
) -> None:
    """Serve captions over HTTP: POST /v1/captions, /v1/localize, GET /v1/styles, /readyz, /metrics, /review."""
    if hash_key:
        _print_hash()
        return
    from caption_agent._extras import require
    from caption_agent.service.settings import ServiceSettings
    from caption_agent.usage import load_checked

    sock = None
    try:
        uvicorn = require("uvicorn", "serve", "`caption-agent serve`")
        overrides = {
            k: v for k, v in {"host": host, "port": port, "review_queue": review_queue}.items() if v is not None
        }
        settings = ServiceSettings.load(service_config, **overrides)
        cfg = load_checked(
            config, catalog=catalog, refiner=refiner, model=model, base_url=base_url, vlm=vlm, vlm_url=vlm_url
        )
        sock = bind(settings.host, settings.port)  # a port in use is reported now, before any model loads
        from caption_agent.service.app import create_app

        app = create_app(cfg, settings)
    except CaptionAgentError as exc:
        if sock is not None:
            sock.close()
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None
    _warn_exposure(settings)
    _run(uvicorn, app, settings, sock, log_level)


def _warn_exposure(settings: Any) -> None:
    """Warn about a service others can reach without a key, or that answers fewer host names than it listens on."""
    if settings.host not in ("127.0.0.1", "::1", "localhost") and not settings.api_key_hashes:
        typer.secho(
            f"warning: listening on {settings.host} without API keys; anyone who can reach it may use it.",
            fg=typer.colors.YELLOW,
            err=True,
        )
    if settings.allowed_hosts is None and settings.host in ("0.0.0.0", "::", ""):
        typer.secho(
            f"warning: listening on {settings.host}, but only requests addressed to "
            f"{', '.join(settings.host_names())} are answered; list the names clients use in `allowed_hosts`.",
            fg=typer.colors.YELLOW,
            err=True,
        )


def _run(uvicorn: Any, app: Any, settings: Any, sock: socket.socket, log_level: str) -> None:
    from caption_agent.service.middleware import header_deadline_protocol

    # proxy_headers=False: X-Forwarded-* are believed only from `trusted_proxies`, by the app's HTTP guard.
    # http=: uvicorn's own protocol with a deadline on request headers (`header_timeout_s`), which uvicorn lacks.
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=settings.host,
            port=settings.port,
            log_level=log_level,
            timeout_graceful_shutdown=10,
            proxy_headers=False,
            http=header_deadline_protocol(settings.header_timeout_s),
        )
    )
    server.run(sockets=[sock])


def bind(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` for uvicorn, or ServeError naming the port and the fix."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise ServeError(f"cannot listen on {host}:{port}: {exc}.", fix="pass a valid --host.") from None
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: restarts need no wait
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ServeError(
                f"port {port} on {host} is already in use (another `caption-agent serve`?).",
                fix=f"stop the other server, or pass another port: --port {port + 1}.",
            ) from None
        raise ServeError(f"cannot listen on {host}:{port}: {exc}.", fix="pass another --host or --port.") from None
    sock.set_inheritable(True)
    return sock


class ServeError(CaptionAgentError):
    """The service cannot listen where it was told to."""


def _print_hash() -> None:
    import sys

    from caption_agent.service.security import hash_key, new_key

    key = "" if sys.stdin.isatty() else sys.stdin.read().strip()
    if not key:
        key = new_key()
        typer.echo(f"key (give this to the client; it is not stored): {key}", err=True)
    try:
        typer.echo(hash_key(key))
    except ValueError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None
