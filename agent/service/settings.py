"""Settings of the HTTP service: defaults < TOML file (`--service-config`) < CAPTION_AGENT_SERVICE_* environment
< explicit arguments. Kept apart from AgentConfig so the agent's config (and job fingerprints) do not change.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import ClassVar

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from caption_agent.config import TomlSettings

_HASH_PREFIX = "sha256:"
_LOOPBACK = ["localhost", "127.0.0.1", "::1"]
_WILDCARDS = {"", "0.0.0.0", "::"}  # bind-all addresses: no name a client would use


class ServiceSettings(TomlSettings):
    """How `caption-agent serve` listens, protects itself and batches."""

    _what: ClassVar[str] = "service configuration"
    _fix: ClassVar[str | None] = "compare the keys with docs/service.md (section Configuration)."

    model_config = SettingsConfigDict(env_prefix="CAPTION_AGENT_SERVICE_", extra="forbid")

    host: str = Field("127.0.0.1", description="Address to bind; loopback unless you put a proxy in front.")
    port: int = Field(8000, ge=0, le=65535, description="TCP port (0 = any free port).")
    api_key_hashes: list[str] = Field(
        default_factory=list,
        description=(
            "Accepted API keys as 'sha256:<hex>' (make one with `caption-agent serve --hash-key`). Empty = no auth."
        ),
    )
    allowed_hosts: list[str] | None = Field(
        None,
        description=(
            "Names the Host header may carry (exact, '.example.com' for a domain and its subdomains, '*' for any). "
            "Unset = the loopback names plus `host`. Refuses DNS-rebinding requests."
        ),
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description=(
            "Addresses or networks (CIDR) of reverse proxies whose X-Forwarded-Proto is believed. Empty = none."
        ),
    )
    max_body_bytes: int = Field(
        12 * 1024 * 1024,
        ge=1024,
        le=2 * 1024**3,
        description="Largest request body, in bytes (at most 2 GiB; a base64 image is 4/3 of its file).",
    )
    body_timeout_s: float = Field(
        30.0, gt=0, le=3600, description="Most seconds to receive one request body, from its first read; then 408."
    )
    queue_size: int = Field(64, ge=1, le=100_000, description="Requests waiting for the drafter; full -> 429.")
    max_batch: int = Field(16, ge=1, le=256, description="Most requests captioned in one batch.")
    batch_window_ms: float = Field(
        15.0, ge=0, le=2000, description="How long the first request of a batch waits for others to join it."
    )
    request_timeout_s: float = Field(
        60.0, gt=0, le=3600, description="Per-request deadline (body, image download and captioning); past it -> 504."
    )
    header_timeout_s: float = Field(
        10.0,
        gt=0,
        le=300,
        description="Most seconds a connection may take to send a request's headers (from connecting, or from the "
        "previous response); then it is closed. Stops clients that trickle headers from holding connections.",
    )
    localize_max_locales: int = Field(8, ge=1, le=16, description="Most target locales in one /v1/localize request.")
    localize_max_facts: int = Field(
        64, ge=0, le=1000, description="Most facts in one /v1/localize request (every fact is read in every locale)."
    )
    localize_max_bytes: int = Field(
        64 * 1024,
        ge=1024,
        le=4 * 1024 * 1024,
        description="Most bytes of caption and facts (as JSON) in one /v1/localize request.",
    )
    url_allowlist: list[str] = Field(
        default_factory=list,
        description=(
            "Hosts whose image URLs may be fetched (exact names, or '.example.com' for subdomains). Empty = no URLs."
        ),
    )
    allow_private_urls: bool = Field(
        False,
        description=("Let allow-listed hosts resolve to loopback/private/link-local addresses (tests, internal CDNs)."),
    )
    url_timeout_s: float = Field(
        10.0, gt=0, le=120, description="Total deadline of one image download (resolve, connect and every byte)."
    )
    review_queue: Path | None = Field(
        None, description="Review queue JSONL; the agent's policy.review_queue when unset. The /review page needs one."
    )
    review_decisions: Path | None = Field(
        None, description="Where /review appends verdicts (ReviewDecision JSONL); '<queue>.decisions.jsonl' when unset."
    )
    review_images: Path | None = Field(
        None,
        description="Folder keeping uploaded images of results sent to "
        "review, by sha256; '<queue>.images/' when unset.",
    )
    reviewers: dict[str, str] = Field(
        default_factory=dict,
        description="Reviewer name per API key, by the key's hash ('sha256:<hex>' -> name): the name the review "
        "desk records with each verdict given with that key.",
    )
    audit_share: float = Field(
        0.05, ge=0, le=1, description="Share of results published as ok that the review desk also shows (audit)."
    )
    warmup: bool = Field(True, description="Caption one generated image at start-up so the first request is warm.")

    @field_validator("api_key_hashes")
    @classmethod
    def _hashes(cls, value: list[str]) -> list[str]:
        for item in value:
            digest = item[len(_HASH_PREFIX) :] if item.startswith(_HASH_PREFIX) else ""
            if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
                raise ValueError(
                    "each API key hash must look like 'sha256:<64 lowercase hex digits>'; "
                    "make one with `caption-agent serve --hash-key`"
                )
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"trusted_proxies entry {item!r} is not an IP address or CIDR network") from None
        return value

    def host_names(self) -> list[str]:
        """The Host names accepted: ``allowed_hosts``, or the loopback names plus the bound host."""
        if self.allowed_hosts is not None:
            return self.allowed_hosts
        bound = [] if self.host in _WILDCARDS else [self.host]
        return [*_LOOPBACK, *(h for h in bound if h not in _LOOPBACK)]

    def queue_path(self, agent_queue: Path | None) -> Path | None:
        return self.review_queue or agent_queue

    def decisions_path(self, queue: Path) -> Path:
        return self.review_decisions or queue.with_name(queue.name + ".decisions.jsonl")

    def images_path(self, queue: Path) -> Path:
        return self.review_images or queue.with_name(queue.name + ".images")
