"""Helpers for the service tests: uvicorn in a thread serving create_app() over the session's loaded models."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import socket
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import yaml

CHROMIUM = os.environ.get("CAPTION_AGENT_TEST_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
# Headless, no sandbox (CI runs as root), and the features that would reach the network switched off.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-domain-reliability",
    "--disable-client-side-phishing-detection",
    "--metrics-recording-only",
    "--no-pings",
    "--disable-features=Translate,OptimizationHints,MediaRouter,AutofillServerCommunication",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LiveServer:
    """uvicorn.Server in a daemon thread, configured as `caption-agent serve` runs it (uvicorn's own proxy-header
    handling off, the header deadline on); ``url`` is http(s)://127.0.0.1:PORT. ``ssl`` = (certfile, keyfile)
    serves TLS."""

    def __init__(self, app: Any, ssl: tuple[Path, Path] | None = None) -> None:
        import uvicorn

        from caption_agent.service.middleware import header_deadline_protocol

        self.port = free_port()
        self.url = f"{'https' if ssl else 'http'}://127.0.0.1:{self.port}"
        self.app = app
        tls = {"ssl_certfile": str(ssl[0]), "ssl_keyfile": str(ssl[1])} if ssl else {}
        http = header_deadline_protocol(app.state.service.settings.header_timeout_s)
        self.server = uvicorn.Server(
            uvicorn.Config(
                app,
                host="127.0.0.1",
                port=self.port,
                log_level="warning",
                lifespan="on",
                proxy_headers=False,
                http=http,
                **tls,
            )
        )
        self.thread = threading.Thread(target=self.server.run, name=f"uvicorn-{self.port}", daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 120
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)

    @property
    def state(self) -> Any:
        return self.app.state.service


def review_policy(tmp: Path) -> Path:
    """The default policy with a confidence threshold no lite draft reaches: every result goes to review."""
    from caption_agent.policies.schema import default_policy_path

    policy = yaml.safe_load(default_policy_path().read_text(encoding="utf-8"))
    policy["rules"]["confidence"]["threshold"] = 0.99
    path = tmp / "review-everything.yaml"
    path.write_text(yaml.safe_dump(policy), encoding="utf-8")
    return path


def make_agent(catalog_dir: Path, lite_drafter: Any, embedder: Any, refiner: Any = None, **config: Any) -> Any:
    """A CaptionAgent that shares the session's loaded models (no second load)."""
    from caption_agent import AgentConfig, CaptionAgent

    return CaptionAgent(
        AgentConfig.load(
            retrieval={"catalog_dir": catalog_dir},
            refiner={"backend": "local" if refiner is not None else "none"},
            **config,
        ),
        drafter=lite_drafter,
        embedder=embedder,
        refiner=refiner,
    )


@contextlib.contextmanager
def live_service(agent: Any, ssl: tuple[Path, Path] | None = None, **settings: Any) -> Iterator[LiveServer]:
    from caption_agent.service import ServiceSettings, create_app

    app = create_app(agent=agent, settings=ServiceSettings(warmup=False, **settings))
    try:
        with LiveServer(app, ssl) as server:
            yield server
    finally:
        agent.close()


def png_bytes(path: Path, size: int | None = None) -> bytes:
    from PIL import Image

    image = Image.open(path).convert("RGB")
    if size:
        image = image.resize((size, size))
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()
