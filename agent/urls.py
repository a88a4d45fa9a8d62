"""Fetching an image by URL without SSRF: allow-listed hosts only, resolved once and pinned, every address public
(IPv6 forms that carry an IPv4 host judged by that host), no redirects, a size cap and one total deadline. Used by
the HTTP service (``image_url``) and by batch jobs (manifest rows whose image is an http(s) URL)."""

from __future__ import annotations

import ipaddress
import socket
from typing import Iterable
from urllib.parse import urlsplit

from caption_agent.errors import CaptionAgentError, ImageTooLargeError


class UrlNotAllowedError(CaptionAgentError):
    """The URL is not http(s), names a host off the allow-list, or resolves to a private address."""

    status = 403  # the HTTP service answers with this status
    fix = (
        "upload the image instead (or give a local path), or add the host to the allow-list (service: "
        "`url_allowlist`; batch jobs: --url-allow HOST)."
    )


class ImageFetchError(CaptionAgentError):
    """The URL did not serve the image: no answer, not HTTP 200 (redirects are not followed), or too slow."""

    status = 422
    fix = "check that the URL serves the image directly (no redirect) with HTTP 200, or upload the image instead."


class DownloadTooLargeError(ImageTooLargeError):
    """The URL serves more bytes than the image size limit."""

    fix = "serve a smaller image (downscale or recompress it), or raise `images.max_bytes` if you trust the source."


def host_allowed(host: str, allowlist: Iterable[str]) -> bool:
    """Exact host names, or '.example.com' entries that also admit subdomains."""
    host = host.lower().rstrip(".")
    for entry in allowlist:
        entry = entry.lower().rstrip(".")
        if host == entry.lstrip(".") or (entry.startswith(".") and host.endswith(entry)):
            return True
    return False


_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # RFC 6052 well-known prefix: the last 32 bits are the IPv4 host
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")  # RFC 8215 local-use translation: never a public origin
_V4_COMPATIBLE = ipaddress.ip_network("::/96")  # deprecated IPv4-compatible form (::a.b.c.d)


def embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """Every IPv4 address an IPv6 address carries: IPv4-mapped, IPv4-compatible, NAT64, 6to4, Teredo (client and
    server). A request to such an address reaches the IPv4 host, so that host is what must be public."""
    found = [ip.ipv4_mapped, ip.sixtofour, *(ip.teredo or ())]
    if ip in _NAT64 or (ip in _V4_COMPATIBLE and int(ip) > 1):
        found.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return [v4 for v4 in found if v4 is not None]


def is_public_address(address: str) -> bool:
    """A global unicast address, judged by the IPv4 host an IPv6 form carries."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address):
        if ip in _NAT64_LOCAL:
            return False
        inner = embedded_ipv4(ip)
        if inner:  # judged by the IPv4 hosts it leads to (an embedded public host may still be reached)
            return all(v4.is_global and not v4.is_multicast for v4 in inner)
    return ip.is_global and not ip.is_multicast


def resolve_checked(url: str, allowlist: Iterable[str], allow_private: bool) -> tuple[str, str, int, str]:
    """Check ``url`` against the allowlist and resolve it once; returns (scheme, host, port, ip to connect to).

    The caller connects to the returned address, so a second DNS answer cannot point the request elsewhere.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UrlNotAllowedError(f"image_url {url[:200]!r} is not an http(s) URL with a host.")
    if parts.username or parts.password:
        raise UrlNotAllowedError("image_url must not carry credentials.")
    host = parts.hostname
    if not host_allowed(host, allowlist):
        raise UrlNotAllowedError(f"fetching images from host {host!r} is not allowed.")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise ImageFetchError(f"host {host!r} of image_url does not resolve: {exc}.") from exc
    addresses = [str(info[4][0]) for info in infos]
    if not allow_private and not all(is_public_address(a) for a in addresses):
        raise UrlNotAllowedError(
            f"host {host!r} resolves to a private, loopback or link-local address.",
            fix="use a public host, or set `allow_private_urls = true` if you trust it.",
        )
    return parts.scheme, host, port, addresses[0]


async def fetch_image(
    url: str, *, allowlist: Iterable[str], allow_private: bool, max_bytes: int, timeout_s: float
) -> bytes:
    """Download an allow-listed image URL: no redirects, pinned address, at most ``max_bytes``, all of it
    (resolving, connecting and every byte) within ``timeout_s``: a server trickling bytes cannot hold it longer."""
    import asyncio

    try:
        async with asyncio.timeout(timeout_s):
            return await _download(url, list(allowlist), allow_private, max_bytes, timeout_s)
    except TimeoutError:
        raise ImageFetchError(
            f"image_url did not finish downloading within {timeout_s:g} s.",
            fix="serve the image faster or upload it instead; the limit is `url_timeout_s` (service config).",
        ) from None


async def _download(url: str, allowlist: list[str], allow_private: bool, max_bytes: int, timeout_s: float) -> bytes:
    import asyncio

    import httpx

    scheme, host, port, ip = await asyncio.to_thread(resolve_checked, url, allowlist, allow_private)
    parts = urlsplit(url)
    target = f"{scheme}://{('[' + ip + ']') if ':' in ip else ip}:{port}{parts.path or '/'}"
    target += f"?{parts.query}" if parts.query else ""
    headers = {"Host": host if port in (80, 443) else f"{host}:{port}", "Accept": "image/*"}
    try:
        async with (
            httpx.AsyncClient(timeout=timeout_s, follow_redirects=False, trust_env=False) as client,
            client.stream(
                "GET", target, headers=headers, extensions={"sni_hostname": host} if scheme == "https" else {}
            ) as reply,
        ):
            if reply.status_code != 200:
                raise ImageFetchError(f"image_url answered HTTP {reply.status_code}; redirects are not followed.")
            declared = int(reply.headers.get("content-length") or 0)
            if declared > max_bytes:
                raise DownloadTooLargeError(f"image_url serves {declared} bytes, over the limit of {max_bytes}.")
            data = bytearray()
            async for chunk in reply.aiter_bytes():
                data += chunk
                if len(data) > max_bytes:
                    raise DownloadTooLargeError(f"image_url serves more than {max_bytes} bytes.")
    except httpx.HTTPError as exc:
        raise ImageFetchError(f"could not download image_url: {type(exc).__name__}: {exc}.") from exc
    return bytes(data)
