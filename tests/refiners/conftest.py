"""Fixtures for the vLLM refiner tests.

Integration tests talk to a real vLLM server named by the environment (CI starts one with
``scripts/vllm_server.py start``):

    CAPTION_AGENT_TEST_VLLM_URL      base URL, e.g. http://127.0.0.1:18080/v1
    CAPTION_AGENT_TEST_VLLM_MODEL    served model name, e.g. smollm2-135m-instruct
    CAPTION_AGENT_TEST_VLLM_PYTHON   python of the vllm venv: lets a test start (and kill) a second server
    CAPTION_AGENT_TEST_VLLM_MODEL_DIR  model folder for that second server (default .cache/smollm2-hf)

Faults a real server cannot be made to produce on demand (HTTP 500, a hang) come from ``FaultServer``, a tiny
real HTTP server on loopback that can also forward to the real vLLM server after injecting its faults.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any, Iterator

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def vllm_server() -> dict[str, str]:
    """URL and model of the real server; skips the test when the environment names none."""
    url = os.environ.get("CAPTION_AGENT_TEST_VLLM_URL")
    model = os.environ.get("CAPTION_AGENT_TEST_VLLM_MODEL")
    if not url or not model:
        pytest.skip(
            "no vLLM server: start one with `python scripts/vllm_server.py start` and set "
            "CAPTION_AGENT_TEST_VLLM_URL and CAPTION_AGENT_TEST_VLLM_MODEL (CI does)"
        )
    return {"url": url.rstrip("/"), "model": model}


@pytest.fixture(scope="session")
def server_script() -> ModuleType:
    """scripts/vllm_server.py as a module (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location("vllm_server_script", ROOT / "scripts" / "vllm_server.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


class FaultServer:
    """A real HTTP server on loopback that injects faults.

    mode "status": answer every request with ``status`` (after ``delay_s``).
    mode "proxy":  answer the first ``fail_first`` requests with ``status``, forward the rest to ``upstream``.
    It records how many requests arrived and the most that were in flight at once.
    """

    def __init__(
        self,
        mode: str = "status",
        status: int = 500,
        delay_s: float = 0.0,
        fail_first: int = 0,
        upstream: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.mode, self.status, self.delay_s = mode, status, delay_s
        self.fail_first, self.upstream, self.headers = fail_first, upstream, headers or {}
        self.requests = 0
        self.in_flight = 0
        self.peak_in_flight = 0
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def __enter__(self) -> FaultServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fault = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def do_GET(self) -> None:
                self._answer()

            def do_POST(self) -> None:
                self._answer()

            def _answer(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with fault._lock:
                    fault.requests += 1
                    number = fault.requests
                    fault.in_flight += 1
                    fault.peak_in_flight = max(fault.peak_in_flight, fault.in_flight)
                try:
                    time.sleep(fault.delay_s)
                    if fault.mode == "proxy" and number > fault.fail_first:
                        self._forward(body)
                    else:
                        self._send(
                            fault.status,
                            json.dumps({"error": {"message": "injected fault", "type": "fault", "code": fault.status}}),
                        )
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout test)
                finally:
                    with fault._lock:
                        fault.in_flight -= 1

            def _forward(self, body: bytes) -> None:
                assert fault.upstream is not None
                path = self.path[len("/v1") :] if self.path.startswith("/v1") else self.path
                req = urllib.request.Request(
                    fault.upstream + path,
                    data=body or None,
                    method=self.command,
                    headers={
                        "Content-Type": "application/json",
                        "Authorization": self.headers.get("Authorization", ""),
                    },
                )
                try:
                    with urllib.request.urlopen(req, timeout=300) as resp:
                        self._send(resp.status, resp.read().decode())
                except urllib.error.HTTPError as exc:
                    self._send(exc.code, exc.read().decode())

            def _send(self, status: int, text: str) -> None:
                data = text.encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in fault.headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

        return Handler


@pytest.fixture
def fault_server() -> Iterator[type[FaultServer]]:
    """``with fault_server(mode=..., ...) as srv:`` — see FaultServer."""
    yield FaultServer
