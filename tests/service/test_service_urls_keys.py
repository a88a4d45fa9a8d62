"""Image URLs (allowlist, private addresses, redirects, size) against a real loopback http.server; API key
hashing and the `serve --hash-key` command; the localize endpoint on the bundled local refiner."""

from __future__ import annotations

import http.server
import threading
from functools import partial

import httpx
import pytest
from service_helpers import live_service, make_agent

pytest.importorskip("fastapi")


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "192.168.0.1",
        "169.254.169.254",
        "::1",
        "::ffff:127.0.0.1",
        "fe80::1",
        "0.0.0.0",
        # IPv6 forms that carry an IPv4 host: each is unwrapped before the check
        "::7f00:1",  # IPv4-compatible 127.0.0.1
        "::a9fe:a9fe",  # IPv4-compatible 169.254.169.254 (cloud metadata)
        "64:ff9b::7f00:1",  # NAT64 well-known prefix -> 127.0.0.1
        "64:ff9b::a9fe:a9fe",  # NAT64 -> 169.254.169.254
        "64:ff9b:1::a00:1",  # NAT64 local-use prefix
        "2002:7f00:1::1",  # 6to4 of 127.0.0.1
        "2002:c0a8:1::1",  # 6to4 of 192.168.0.1
        "2001:0:4136:e378:8000:63bf:80ff:fffe",  # Teredo, client 127.0.0.1
    ],
)
def test_private_addresses_are_refused_even_when_allow_listed(address):
    from caption_agent.service.errors import UrlNotAllowedError
    from caption_agent.service.security import resolve_checked

    host = f"[{address}]" if ":" in address else address
    with pytest.raises(UrlNotAllowedError, match="private, loopback or link-local"):
        resolve_checked(f"http://{host}/a.jpg", [address], allow_private=False)


@pytest.mark.parametrize(
    "url,allow",
    [
        ("http://evil.example/a.jpg", ["example.com"]),
        ("http://example.com.evil.net/a.jpg", [".example.com"]),
        ("file:///etc/passwd", ["localhost"]),
        ("http://user:pw@localhost/a.jpg", ["localhost"]),
        ("http://localhost/a.jpg", []),
    ],
)
def test_urls_outside_the_allowlist_are_refused(url, allow):
    from caption_agent.service.errors import UrlNotAllowedError
    from caption_agent.service.security import resolve_checked

    with pytest.raises(UrlNotAllowedError):
        resolve_checked(url, allow, allow_private=True)


def test_subdomain_entries_match_subdomains_only():
    from caption_agent.service.security import host_allowed

    assert host_allowed("cdn.example.com", [".example.com"]) and host_allowed("example.com", [".example.com"])
    assert not host_allowed("badexample.com", [".example.com"])


def test_key_hashes_compare_and_the_cli_prints_one():
    from typer.testing import CliRunner

    from caption_agent.cli import app
    from caption_agent.service.security import KeyChecker, hash_key

    key = "a-long-enough-secret-key"
    checker = KeyChecker([hash_key("another-key-of-16+chars"), hash_key(key)])
    assert checker.valid(key) and not checker.valid(key + "x") and not checker.valid("")
    out = CliRunner().invoke(app, ["serve", "--hash-key"], input=key + "\n")
    assert out.exit_code == 0, out.output
    assert out.stdout.strip() == hash_key(key)
    with pytest.raises(ValueError, match="16 characters"):
        hash_key("short")


class _Handler(http.server.SimpleHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if self.path == "/moved.jpg":
            self.send_response(302)
            self.send_header("Location", "http://169.254.169.254/latest/meta-data")
            self.end_headers()
            return
        super().do_GET()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def image_host(images_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("www")
    (folder / "chelsea.jpg").write_bytes((images_dir / "chelsea.jpg").read_bytes())
    (folder / "big.jpg").write_bytes(b"\xff" * 300_000)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(_Handler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"localhost:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture(scope="module")
def url_service(catalog_dir, lite_drafter, embedder):
    agent = make_agent(catalog_dir, lite_drafter, embedder, images={"max_bytes": 200_000})
    with live_service(agent, url_allowlist=["localhost"], allow_private_urls=True) as server:
        yield server


@pytest.mark.slow
def test_image_url_on_an_allowed_host(url_service, image_host):
    reply = httpx.post(
        f"{url_service.url}/v1/captions", json={"image_url": f"http://{image_host}/chelsea.jpg"}, timeout=120
    )
    assert reply.status_code == 200, reply.text
    assert "cat" in reply.json()["draft"].lower()


@pytest.mark.slow
@pytest.mark.parametrize(
    "path,status,error",
    [
        ("moved.jpg", 422, "ImageFetchError"),
        ("missing.jpg", 422, "ImageFetchError"),
        ("big.jpg", 413, "DownloadTooLargeError"),
    ],
)
def test_image_url_failures(url_service, image_host, path, status, error):
    reply = httpx.post(f"{url_service.url}/v1/captions", json={"image_url": f"http://{image_host}/{path}"}, timeout=60)
    assert reply.status_code == status, reply.text
    assert reply.json()["error"]["type"] == error


@pytest.mark.slow
def test_private_host_refused_without_allow_private(catalog_dir, lite_drafter, embedder, image_host):
    agent = make_agent(catalog_dir, lite_drafter, embedder)
    with live_service(agent, url_allowlist=["localhost"]) as server:
        reply = httpx.post(f"{server.url}/v1/captions", json={"image_url": f"http://{image_host}/chelsea.jpg"})
    assert reply.status_code == 403 and "private" in reply.json()["error"]["message"]


@pytest.mark.slow
def test_localize_refines_into_each_locale(catalog_dir, lite_drafter, embedder, local_refiner):
    agent = make_agent(catalog_dir, lite_drafter, embedder, refiner=local_refiner)
    # The in-process SmolLM2 may take several attempts per locale on a loaded 2-core box: the deadline is not the test.
    with live_service(agent, request_timeout_s=280) as server:
        body = {
            "text": "A white ceramic mug on a wooden table.",
            "locales": ["de-DE", "fr"],
            "style": "alt_text",
            "facts": ["Color: white", "Material: stoneware"],
            "id": "mug-1",
        }
        reply = httpx.post(f"{server.url}/v1/localize", json=body, timeout=300)
        assert reply.status_code == 200, reply.text
        results = reply.json()["results"]
        assert [r["locale"] for r in results] == ["de-DE", "fr"]
        assert all(r["draft"] == body["text"] and r["provenance"]["refiner"] == "local" for r in results)
        bad = httpx.post(f"{server.url}/v1/localize", json={**body, "locales": ["xx-QQ"]})
        assert bad.status_code == 422 and bad.json()["error"]["type"] == "InvalidLocaleError"
        form = httpx.post(f"{server.url}/v1/localize", data={"text": "x"})
        assert form.status_code == 415


@pytest.mark.slow
def test_localize_without_a_refiner_is_a_409(catalog_dir, lite_drafter, embedder):
    agent = make_agent(catalog_dir, lite_drafter, embedder)
    with live_service(agent) as server:
        reply = httpx.post(f"{server.url}/v1/localize", json={"text": "A mug.", "locales": ["de-DE"]})
    assert reply.status_code == 409 and "refiner" in reply.json()["error"]["message"]


@pytest.mark.parametrize(
    "address", ["8.8.8.8", "2606:4700:4700::1111", "64:ff9b::808:808", "::ffff:808:808", "2002:808:808::1"]
)
def test_ipv6_forms_of_public_hosts_stay_public(address):
    from caption_agent.service.security import _public

    assert _public(address)
