"""The JSON API through a real uvicorn server on loopback, hit with httpx: happy paths, every bad input, auth,
micro-batching, the bounded queue (429 + Retry-After), the per-request timeout (504) and /metrics."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io

import httpx
import pytest
from service_helpers import live_service, make_agent, png_bytes

pytest.importorskip("fastapi")
pytestmark = pytest.mark.slow

KEY = "test-key-0123456789abcdef"
AUTH = {"X-API-Key": KEY}


@pytest.fixture(scope="module")
def api(catalog_dir, lite_drafter, embedder):
    from caption_agent.service import hash_key

    agent = make_agent(catalog_dir, lite_drafter, embedder)
    with live_service(
        agent, api_key_hashes=[hash_key(KEY)], max_body_bytes=2 * 1024 * 1024, batch_window_ms=50
    ) as server:
        yield server


@pytest.fixture(scope="module")
def client(api):
    with httpx.Client(base_url=api.url, headers=AUTH, timeout=120) as c:
        yield c


def test_health_ready_styles_and_openapi(client):
    assert client.get("/healthz").json() == {"status": "alive"}
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.text
    checks = ready.json()["checks"]  # a refiner chain with a probe adds "refiner"
    assert {"models", "store"} <= set(checks) and set(checks.values()) == {"ok"}
    styles = client.get("/v1/styles").json()
    from caption_agent.prompts import list_styles

    assert {s["name"] for s in styles["styles"]} == set(list_styles()) and styles["default"] == "alt_text"
    spec = client.get("/openapi.json").json()
    body = spec["paths"]["/v1/captions"]["post"]["requestBody"]["content"]
    assert set(body) == {"multipart/form-data", "application/json"}
    assert {"401", "413", "415", "422", "429", "504"} <= set(spec["paths"]["/v1/captions"]["post"]["responses"])


def test_multipart_caption_is_the_library_result(client, images_dir):
    data = (images_dir / "chelsea.jpg").read_bytes()
    reply = client.post(
        "/v1/captions", files={"image": ("chelsea.jpg", data, "image/jpeg")}, data={"locale": "en-US", "key": "cat-1"}
    )
    assert reply.status_code == 200, reply.text
    result = reply.json()
    assert result["key"] == "cat-1" and result["status"] in ("ok", "review")
    assert result["image"]["sha256"] == hashlib.sha256(data).hexdigest()
    assert "cat" in result["draft"].lower() and result["text"]
    assert result["provenance"]["drafter"] == "lite" and "draft" in result["provenance"]["timings_ms"]


def test_json_base64_caption_grounded_in_the_catalog(client, images_dir):
    data = (images_dir / "coffee.jpg").read_bytes()
    reply = client.post(
        "/v1/captions", json={"image_base64": base64.b64encode(data).decode(), "style": "seo_product", "sku": "MUG-001"}
    )
    assert reply.status_code == 200, reply.text
    result = reply.json()
    assert result["style"] == "seo_product"
    assert result["facts"] and {f["sku"] for f in result["facts"]} == {"MUG-001"}


BAD_CASES = [
    "wrong content type",
    "body over the limit",
    "corrupt image",
    "truncated jpeg",
    "pixel bomb",
    "unknown style",
    "bad locale",
    "missing image field",
    "unknown form field",
    "bad base64",
    "two image sources",
    "unknown json field",
    "n out of range",
    "url host not allowed",
]


def _huge_png() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("1", (10_000, 10_000)).save(buf, "PNG")  # 100 Mpx in a few kB: over the 50 Mpx limit
    return buf.getvalue()


def _bad_requests(images_dir):
    jpeg = (images_dir / "coffee.jpg").read_bytes()
    files = lambda data: {"files": {"image": ("x.jpg", data, "image/jpeg")}}  # noqa: E731
    cases = {
        "wrong content type": (
            415,
            "UnsupportedMediaTypeError",
            {"content": b"hello", "headers": {"Content-Type": "text/plain"}},
        ),
        "body over the limit": (413, "PayloadTooLargeError", files(b"\xff" * (3 * 1024 * 1024))),
        "corrupt image": (422, "InvalidImageError", files(b"this is not an image")),
        "truncated jpeg": (422, "InvalidImageError", files(jpeg[: len(jpeg) // 3])),
        "pixel bomb": (413, "ImageTooLargeError", files(_huge_png())),
        "unknown style": (422, "UnknownStyleError", {**files(jpeg), "data": {"style": "limerick"}}),
        "bad locale": (422, "InvalidLocaleError", {**files(jpeg), "data": {"locale": "xx-QQ"}}),
        "missing image field": (422, "BadRequestError", {"files": {"picture": ("x.jpg", jpeg, "image/jpeg")}}),
        "unknown form field": (422, "BadRequestError", {**files(jpeg), "data": {"colour": "red"}}),
        "bad base64": (422, "BadRequestError", {"json": {"image_base64": "%%%not base64%%%"}}),
        "two image sources": (
            422,
            "RequestValidationError",
            {"json": {"image_base64": "AAAA", "image_url": "http://x/y.jpg"}},
        ),
        "unknown json field": (422, "RequestValidationError", {"json": {"image_base64": "AAAA", "tone": "fun"}}),
        "n out of range": (422, "RequestValidationError", {"json": {"image_base64": "AAAA", "n_candidates": 0}}),
        "url host not allowed": (403, "UrlNotAllowedError", {"json": {"image_url": "http://169.254.169.254/x"}}),
    }
    assert sorted(cases) == sorted(BAD_CASES)
    return cases


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_input_gets_a_4xx_that_says_what_to_fix(client, images_dir, case):
    status, error_type, kwargs = _bad_requests(images_dir)[case]
    reply = client.post("/v1/captions", **kwargs)
    assert reply.status_code == status, reply.text
    error = reply.json()["error"]
    assert error["type"] == error_type and error["status"] == status
    assert error["message"] and error["fix"]
    assert "Traceback" not in reply.text


@pytest.mark.parametrize("headers", [{}, {"X-API-Key": "wrong-key-0123456789"}, {"Authorization": "Bearer nope"}])
def test_missing_or_wrong_key_is_401(api, headers, images_dir):
    reply = httpx.post(
        f"{api.url}/v1/captions",
        headers=headers,
        files={"image": ("c.jpg", (images_dir / "coffee.jpg").read_bytes(), "image/jpeg")},
    )
    assert reply.status_code == 401 and reply.json()["error"]["type"] == "AuthError"
    assert httpx.get(f"{api.url}/v1/styles", headers=headers).status_code == 401


def test_bearer_key_is_accepted(api):
    reply = httpx.get(f"{api.url}/v1/styles", headers={"Authorization": f"Bearer {KEY}"})
    assert reply.status_code == 200


def test_unknown_path_and_method_are_json_errors(client):
    for reply in (client.get("/v2/nothing"), client.delete("/v1/styles")):
        assert reply.status_code in (404, 405) and reply.json()["error"]["fix"]


def _metric(url: str, name: str, **labels: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    total = 0.0
    for family in text_string_to_metric_families(httpx.get(f"{url}/metrics").text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def test_a_burst_is_micro_batched(api, images_dir):
    images = [
        png_bytes(images_dir / name, 96)
        for name in ("chelsea.jpg", "coffee.jpg", "rocket.jpg", "astronaut.jpg", "flower.jpg", "china.jpg")
    ]
    before_batches = _metric(api.url, "caption_agent_batch_size_count")
    before_items = _metric(api.url, "caption_agent_batch_size_sum")

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=api.url, headers=AUTH, timeout=120) as c:
            return await asyncio.gather(
                *(
                    c.post("/v1/captions", files={"image": (f"{i}.png", data, "image/png")})
                    for i, data in enumerate(images * 2)
                )
            )

    replies = asyncio.run(burst())
    assert [r.status_code for r in replies] == [200] * len(replies)
    batches = _metric(api.url, "caption_agent_batch_size_count") - before_batches
    items = _metric(api.url, "caption_agent_batch_size_sum") - before_items
    assert items == len(replies)
    assert 1 <= batches < len(replies)  # some requests shared a drafter batch


def test_metrics_count_requests_errors_and_stages(client, api, images_dir):
    client.post("/v1/captions", files={"image": ("x.jpg", b"junk", "image/jpeg")})
    assert _metric(api.url, "caption_agent_http_requests_total", route="/v1/captions", status="200") >= 1
    assert _metric(api.url, "caption_agent_http_errors_total", route="/v1/captions", type="InvalidImageError") >= 1
    assert _metric(api.url, "caption_agent_stage_seconds_count", stage="draft") >= 1
    text = httpx.get(f"{api.url}/metrics").text
    assert "caption_agent_queue_depth" in text and "caption_agent_http_request_seconds_bucket" in text


@pytest.fixture(scope="module")
def tight(catalog_dir, lite_drafter, embedder):
    """One request at a time, one waiting, and a deadline shorter than any pipeline run."""
    agent = make_agent(catalog_dir, lite_drafter, embedder)
    with live_service(agent, queue_size=1, max_batch=1, batch_window_ms=0, request_timeout_s=0.02) as server:
        yield server


def test_full_queue_answers_429_with_retry_after_and_slow_requests_504(tight, images_dir):
    data = (images_dir / "coffee.jpg").read_bytes()

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=tight.url, timeout=60) as c:
            return await asyncio.gather(
                *(c.post("/v1/captions", files={"image": ("c.jpg", data, "image/jpeg")}) for _ in range(12))
            )

    replies = asyncio.run(burst())
    statuses = sorted({r.status_code for r in replies})
    assert set(statuses) <= {200, 429, 504} and 429 in statuses and 504 in statuses, statuses
    for reply in replies:
        if reply.status_code == 429:
            assert int(reply.headers["Retry-After"]) >= 1
            assert reply.json()["error"]["type"] == "QueueFullError"
        if reply.status_code == 504:
            assert reply.json()["error"]["type"] == "RequestTimeoutError"
    assert _metric(tight.url, "caption_agent_http_errors_total", type="QueueFullError") >= 1
