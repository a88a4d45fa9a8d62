"""API keys (sha256 hashes in config, constant-time comparison) and image URLs fetched without SSRF."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Iterable, Mapping

from caption_agent.service.errors import AuthError
from caption_agent.urls import embedded_ipv4, fetch_image, host_allowed, resolve_checked  # noqa: F401 - the service's URL fetching lives in the core module
from caption_agent.urls import is_public_address as _public  # noqa: F401

COOKIE = "caption_agent_key"


def hash_key(key: str) -> str:
    """The config form of an API key: 'sha256:<hex>'. Keys are random tokens, so a plain sha256 is enough."""
    if len(key) < 16:
        raise ValueError("an API key needs at least 16 characters; use `caption-agent serve --hash-key` to make one")
    return "sha256:" + hashlib.sha256(key.encode("utf-8")).hexdigest()


def new_key() -> str:
    return secrets.token_urlsafe(32)


class KeyChecker:
    """Checks a presented key against every configured hash (no early exit, constant-time comparisons)."""

    def __init__(self, hashes: Iterable[str]) -> None:
        self._digests = [bytes.fromhex(h.split(":", 1)[1]) for h in hashes]

    @property
    def enabled(self) -> bool:
        return bool(self._digests)

    def valid(self, key: str | None) -> bool:
        if not self.enabled:
            return True
        presented = hashlib.sha256((key or "").encode("utf-8")).digest()
        ok = False
        for digest in self._digests:
            ok |= hmac.compare_digest(presented, digest)
        return ok and bool(key)

    def check(self, headers: Mapping[str, str], cookies: Mapping[str, str] | None = None) -> None:
        """Raise AuthError unless the headers (or the review page's cookie) carry a valid key."""
        if not self.enabled:
            return
        key = headers.get("x-api-key")
        auth = headers.get("authorization", "")
        if key is None and auth[:7].lower() == "bearer ":
            key = auth[7:].strip()
        if key is None and cookies:
            key = cookies.get(COOKIE)
        if key is None:
            raise AuthError("this endpoint needs an API key and none was sent.")
        if not self.valid(key):
            raise AuthError("the API key is not valid.")


# Query parameters that look like a credential, compared folded (lower case, letters and digits only: `Access-Token`,
# `access_token` and `accessToken` are one name). Refused on every route, /review included: URLs end up in logs,
# proxies and browser histories. No route of this service takes a query parameter of these names.
URL_KEY_NAMES = frozenset(
    {
        "apikey", "xapikey", "apitoken", "apisecret", "key", "accesskey", "secretkey", "privatekey", "token",
        "accesstoken", "authtoken", "idtoken", "refreshtoken", "sessiontoken", "bearer", "bearertoken", "jwt",
        "auth", "authorization", "authkey", "credential", "credentials", "secret", "clientsecret", "password",
        "passwd", "pwd", "session", "sessionid", "sessionkey", "captionagentkey",
    }
)  # fmt: skip


def fold_name(name: str) -> str:
    """A parameter name compared as a credential name: lower case, letters and digits only."""
    return "".join(c for c in name.casefold() if c.isalnum())


def refuse_key_in_url(query: Iterable[str]) -> None:
    """Raise AuthError when the query string carries a parameter named like an API key (see URL_KEY_NAMES)."""
    named = sorted(name for name in query if fold_name(name) in URL_KEY_NAMES)
    if named:
        raise AuthError(
            f"API keys are not accepted in the URL (query parameter {named[0][:64]!r}).",
            fix="send the key as `Authorization: Bearer KEY` or `X-API-Key: KEY`; a key sent in a URL may be "
            "logged on the way, so replace it.",
        )
