"""One exception base; every subclass says what went wrong and how to fix it."""

from __future__ import annotations


class CaptionAgentError(Exception):
    """Base of every error raised by caption-agent.

    ``fix`` is a short instruction for the user; it is appended to the message.
    """

    fix: str = ""

    def __init__(self, message: str, *, fix: str | None = None) -> None:
        self.reason = message
        if fix is not None:
            self.fix = fix
        super().__init__(f"{message} Fix: {self.fix}" if self.fix else message)

    def to_record(self) -> dict[str, str]:
        """A JSON-friendly record for batch error rows."""
        return {"type": type(self).__name__, "message": str(self)}


class InvalidImageError(CaptionAgentError):
    fix = "pass a readable JPEG/PNG/WebP/GIF/BMP/TIFF file within the configured size limits."


class ImageTooLargeError(InvalidImageError):
    fix = (
        "downscale the image, or raise `images.max_pixels` / `images.max_bytes` in the config if you trust the source."
    )


class ImageCostError(ImageTooLargeError):
    """An image whose decoding would cost far more than its size suggests (JPEG scans, metadata)."""

    fix = "re-encode the image, or raise the limit named in the message in the config if you trust the source."


class ImageShapeError(InvalidImageError):
    fix = (
        "crop the image to the part to caption (or pad it) so that its long side is at most "
        "`images.max_aspect_ratio` times its short side, or raise that limit in the config."
    )


class UnknownStyleError(CaptionAgentError):
    fix = "run `caption-agent styles` to list the presets, or add a YAML preset to your prompts folder."


class InvalidLocaleError(CaptionAgentError):
    fix = "use a BCP-47 tag such as en-US, de-DE, fr, ja-JP or pt-BR."


class CatalogError(CaptionAgentError):
    fix = "check the catalog file against the Product schema (sku, title required; see docs)."


class CatalogRowError(CatalogError):
    def __init__(
        self, message: str, *, row: int | None = None, field: str | None = None, fix: str | None = None
    ) -> None:
        self.row = row
        self.field = field
        where = f"row {row}" if row is not None else "row"
        where += f", field {field!r}" if field else ""
        super().__init__(f"{where}: {message}", fix=fix)


class UnknownSkuError(CatalogError):
    """A request names a sku the configured catalog does not hold (the same error in API, CLI, service, jobs)."""

    fix = "correct the sku, ingest the product into the catalog, or leave the sku out to ground by similarity."


class EmbedderMismatchError(CatalogError):
    fix = (
        "query the collection with the embedder it was built with, or re-ingest into a new collection "
        "(`--collection NAME`) with the new embedder."
    )


class StoreLockedError(CatalogError):
    fix = (
        "wait for the other writer to finish, or run a Chroma server (`chroma run --path DIR`) and point "
        "`retrieval.chroma_url` at it so several processes can write."
    )


class ConfigError(CaptionAgentError):
    fix = (
        "check the TOML config file and the CAPTION_AGENT_* environment variables against the settings "
        "listed in agent/config.py (README, section Configuration)."
    )


class PolicyError(CaptionAgentError):
    fix = "run `caption-agent policy check FILE` to see which key or value is wrong."


class MissingExtraError(CaptionAgentError):
    def __init__(self, package: str, extra: str, purpose: str) -> None:
        super().__init__(
            f"{purpose} needs the Python package {package!r}, which is not installed.",
            fix=f"pip install 'caption-agent[{extra}]'",
        )


class BackendError(CaptionAgentError):
    """A model backend failed (load, server unreachable, bad output after retries)."""

    fix = "check the backend's settings and logs; see the README section for this backend."


class BackendUnavailableError(BackendError):
    pass


class UnsupportedModelError(BackendError):
    """The configured model cannot do what the backend needs (e.g. a text-only model for a VLM drafter)."""

    fix = (
        "point the setting at a model of the expected kind (for drafters: an image-to-text / image-text-to-text "
        "model such as BLIP, GIT, Florence-2, SmolVLM, Qwen2.5-VL, PaliGemma or LLaVA)."
    )


class ModelOutputError(BackendError):
    fix = "the model's output could not be used; the pipeline falls back to the ranked draft."


def describe(exc: BaseException) -> str:
    """One readable line for a CLI: pydantic's ValidationError as ``field: problem; …`` (no doc links)."""
    errors = getattr(exc, "errors", None)
    if callable(errors) and type(exc).__name__ == "ValidationError":
        parts = [f"{'.'.join(map(str, e['loc'])) or 'value'}: {e['msg']}" for e in errors(include_url=False)]
        return f"invalid {getattr(exc, 'title', 'input')}: " + "; ".join(parts) + ". Fix: see --help for the ranges."
    return str(exc)
