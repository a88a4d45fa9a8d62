"""Request and response bodies of the HTTP API. Caption results are the library's own CaptionResult."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from caption_agent.localize import CaptionRow
from caption_agent.schemas import CaptionResult

_STYLE = Field(None, max_length=64, description="Style preset (GET /v1/styles); the service default when unset.")
_LOCALE = Field(None, max_length=35, description="BCP-47 output locale, e.g. en-US; the default when unset.")


class CaptionFields(BaseModel):
    """Options shared by the JSON and the multipart forms of POST /v1/captions."""

    model_config = ConfigDict(extra="forbid")

    style: str | None = _STYLE
    locale: str | None = _LOCALE
    sku: str | None = Field(None, max_length=128, description="Product sku in the catalog (grounding).")
    brand: str | None = Field(None, max_length=128, description="Brand hint.")
    category: str | None = Field(None, max_length=128, description="Category hint.")
    n_candidates: int | None = Field(None, ge=1, le=32, description="Drafts to generate.")
    max_chars: int | None = Field(None, ge=10, le=5000, description="Tighter length budget than the preset's.")
    key: str | None = Field(None, max_length=256, description="Your id for this item, echoed in the result.")


class CaptionJSON(CaptionFields):
    """JSON form: the image as base64, or a URL on a host the operator allows."""

    image_base64: str | None = Field(None, description="The image file, base64-encoded.")
    image_url: str | None = Field(
        None,
        max_length=2048,
        description="http(s) URL of the image; refused unless its host is in the service's allowlist.",
    )

    @model_validator(mode="after")
    def _one_image(self) -> CaptionJSON:
        if (self.image_base64 is None) == (self.image_url is None):
            raise ValueError("give exactly one of image_base64 or image_url")
        return self


class CaptionMultipart(CaptionFields):
    """Multipart form: the file in field ``image`` plus the same options as form fields."""

    image: bytes = Field(description="The image file.", json_schema_extra={"format": "binary"})


class LocalizeBody(CaptionRow):
    """A caption to rewrite into other locales (the same row `caption-agent batch localize` reads)."""

    locales: list[str] = Field(min_length=1, max_length=16, description="Target BCP-47 locales.")


class LocalizeResponse(BaseModel):
    results: list[CaptionResult] = Field(description="One result per target locale, in request order.")


class StyleInfo(BaseModel):
    name: str
    version: str
    description: str
    max_chars: int
    use_facts: bool


class StylesResponse(BaseModel):
    styles: list[StyleInfo]
    default: str = Field(description="Style used when a request names none.")


class ErrorDetail(BaseModel):
    status: int
    type: str = Field(description="Error class, e.g. InvalidImageError, QueueFullError.")
    message: str = Field(description="What was wrong.")
    fix: str = Field(description="How to fix it.")
    errors: list[dict[str, Any]] | None = Field(None, description="Field errors of a request that failed validation.")
    rules: list[dict[str, str]] | None = Field(
        None,
        description="EditRefusedError: the policy rules that refused a review edit, each with rule, action and reason.",
    )
    suggestion: str | None = Field(
        None,
        description="EditRefusedError: the edit as the policy would publish it, "
        "when a rule could fix it (PII masked, text trimmed).",
    )


class ErrorResponse(BaseModel):
    error: ErrorDetail


class Health(BaseModel):
    status: Literal["alive"]


class Readiness(BaseModel):
    ready: bool
    checks: dict[str, str] = Field(description="Each check: 'ok' or why it failed.")


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for the given error statuses."""
    text = {
        400: "Bad request",
        401: "Missing or wrong API key",
        403: "Image URL not allowed",
        404: "Not found",
        409: "Not possible with this configuration or state",
        413: "Body or image too large",
        415: "Unsupported content type",
        422: "Invalid input",
        429: "Queue full; see Retry-After",
        502: "A model backend failed",
        503: "Not ready or backend unavailable",
        504: "Request timed out",
    }
    return {code: {"model": ErrorResponse, "description": text.get(code, "Error")} for code in codes}
