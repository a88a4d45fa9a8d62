"""Bounded requests, through a real uvicorn server on loopback: /v1/localize limits (facts, locales, bytes), work
dropped once its caller is gone, text that is not Unicode, credentials in any spelling of a query parameter on
every route (/review included), two Host headers, and a deadline on connections that trickle their headers."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import httpx
import pytest
from service_helpers import live_service

pytest.importorskip("fastapi")
pytestmark = pytest.mark.slow

BODY = {"text": "A white ceramic mug on a wooden table.", "locales": ["de-DE"], "facts": ["Color: white"]}


def _template_agent(catalog_dir, lite_drafter, embedder) -> Any:
    from caption_agent import AgentConfig, CaptionAgent

    config = AgentConfig.load(retrieval={"catalog_dir": catalog_dir}, refiner={"backend": "template"})
    return CaptionAgent(config, drafter=lite_drafter, embedder=embedder)


class _Slow:
    """The real refiner, each call delayed (a slow LLM server: a fault the template refiner cannot produce)."""

    def __init__(self, inner: Any, delay_s: float) -> None:
        self.inner, self.delay_s, self.calls = inner, delay_s, 0
        self.lock = threading.Lock()

    def _tick(self) -> None:
        with self.lock:
            self.calls += 1
        time.sleep(self.delay_s)

    def refine(self, job: Any) -> Any:
        self._tick()
        return self.inner.refine(job)

    def refine_many(self, jobs: Any) -> Any:
        self._tick()
        return self.inner.refine_many(jobs)

    @property
    def name(self) -> str:
        return self.inner.name

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.fixture(scope="module")
def service(catalog_dir, lite_drafter, embedder, tmp_path_factory):
    queue = tmp_path_factory.mktemp("q") / "queue.jsonl"
    agent = _template_agent(catalog_dir, lite_drafter, embedder)
    with live_service(agent, localize_max_facts=4, localize_max_bytes=2048, review_queue=queue) as server:
        yield server


def test_localize_limits_are_413_naming_the_setting(service):
    ok = httpx.post(f"{service.url}/v1/localize", json=BODY, timeout=60)
    assert ok.status_code == 200, ok.text
    cases = [
        ({**BODY, "facts": [f"Fact {i}" for i in range(5)]}, "localize_max_facts"),
        ({**BODY, "locales": ["de-DE", "fr", "es", "it", "nl", "pl", "pt", "sv", "da"]}, "localize_max_locales"),
        ({**BODY, "facts": ["x" * 1500, "y" * 1500]}, "localize_max_bytes"),
    ]
    for body, setting in cases:
        reply = httpx.post(f"{service.url}/v1/localize", json=body, timeout=60)
        assert reply.status_code == 413, reply.text
        error = reply.json()["error"]
        assert setting in error["message"] and error["fix"]


def test_a_lone_surrogate_in_a_fact_is_a_422_not_a_500(service):
    raw = '{"text": "A mug.", "locales": ["de-DE"], "facts": ["Colour \\ud800 white"]}'
    reply = httpx.post(
        f"{service.url}/v1/localize", content=raw, headers={"content-type": "application/json"}, timeout=60
    )
    assert reply.status_code == 422, reply.text
    assert "facts.0.text" in reply.json()["error"]["message"]


def test_a_body_that_is_not_utf8_is_a_400_saying_so(service):
    raw = b'{"text": "A mug \xff\xfe.", "locales": ["de-DE"], "facts": []}'
    reply = httpx.post(
        f"{service.url}/v1/localize", content=raw, headers={"content-type": "application/json"}, timeout=60
    )
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert "UTF-8" in error["message"] and "UTF-8" in error["fix"], error


def test_work_stops_when_the_caller_is_gone(catalog_dir, lite_drafter, embedder):
    """8 locales at 0.5 s each: 4 s of work. The caller leaves after about 1 s (a 504, then a hang-up); without
    the stop all 8 would run, with it at most the ones started by then."""

    def slow_agent() -> tuple[Any, _Slow]:
        agent = _template_agent(catalog_dir, lite_drafter, embedder)
        chain = agent.refiner
        chain.links = [_Slow(chain.links[0], delay_s=0.5)]  # the template refiner, delayed
        return agent, chain.links[0]

    body = {**BODY, "locales": ["de-DE", "fr", "es", "it", "nl", "pl", "pt", "sv"]}
    agent, slow = slow_agent()
    with live_service(agent, request_timeout_s=1.0) as server:
        reply = httpx.post(f"{server.url}/v1/localize", json=body, timeout=60)
        assert reply.status_code == 504
        time.sleep(3.5)
        assert slow.calls <= 4, slow.calls
    agent, slow = slow_agent()
    with live_service(agent, request_timeout_s=30.0) as server:
        with pytest.raises(httpx.ReadTimeout):  # the client hangs up after 0.6 s
            httpx.post(f"{server.url}/v1/localize", json=body, timeout=0.6)
        time.sleep(3.5)
        assert slow.calls <= 4, slow.calls
        # The model thread is free again for the next caller.
        ok = httpx.post(f"{server.url}/v1/localize", json=BODY, timeout=60)
        assert ok.status_code == 200, ok.text


@pytest.mark.parametrize(
    "name", ["api_key", "API-KEY", "access-token", "Access_Token", "accessToken", "auth", "Authorization", "token"]
)
@pytest.mark.parametrize("route", ["/v1/styles", "/review", "/healthz"])
def test_credentials_in_any_query_parameter_spelling_are_refused_on_every_route(service, name, route):
    reply = httpx.get(f"{service.url}{route}", params={name: "secret-value-0123456789"})
    assert reply.status_code == 401, (route, name, reply.status_code)
    assert "not accepted in the URL" in reply.json()["error"]["message"]
    assert httpx.get(f"{service.url}{route}", params={"page": "2"}).status_code != 401


def _raw_request(port: int, request: bytes, timeout: float = 10.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_two_host_headers_are_refused(service):
    reply = _raw_request(
        service.port, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n"
    )
    assert reply.startswith(b"HTTP/1.1 400") and b"2 Host headers" in reply
    ok = _raw_request(service.port, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    assert ok.startswith(b"HTTP/1.1 200")


def test_a_connection_trickling_its_headers_is_closed_at_the_deadline(catalog_dir, lite_drafter, embedder):
    agent = _template_agent(catalog_dir, lite_drafter, embedder)
    with live_service(agent, header_timeout_s=1.0) as server:
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        t0 = time.monotonic()
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        closed_after = None
        for i in range(40):  # one header line every 0.25 s, for up to 10 s
            try:
                sock.sendall(f"X-Slow-{i}: a\r\n".encode())
                sock.settimeout(0.25)
                if sock.recv(1) == b"":
                    closed_after = time.monotonic() - t0
                    break
            except TimeoutError:
                continue
            except OSError:
                closed_after = time.monotonic() - t0
                break
        sock.close()
        assert closed_after is not None and 0.9 <= closed_after < 3.0, closed_after
        # An ordinary client on a kept-alive connection is unaffected: two requests, one connection.
        with httpx.Client(base_url=server.url) as client:
            assert client.get("/healthz").status_code == 200
            time.sleep(0.5)
            assert client.get("/healthz").status_code == 200


def test_a_hostile_jpeg_is_refused_at_once_and_the_service_stays_free(service):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    from hostile_images import repeated_scan_jpeg

    t0 = time.perf_counter()
    reply = httpx.post(f"{service.url}/v1/captions", files={"image": ("x.jpg", repeated_scan_jpeg(512, 400))})
    assert time.perf_counter() - t0 < 5.0
    assert reply.status_code == 422, reply.text
    error = reply.json()["error"]
    assert error["type"] == "ImageCostError" and "images.max_jpeg_scans" in error["message"]
