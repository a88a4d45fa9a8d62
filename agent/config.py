"""Typed configuration: defaults < TOML file < CAPTION_AGENT_* environment < explicit arguments.

Nested fields use ``__`` in environment names, e.g. ``CAPTION_AGENT_REFINER__BACKEND=vllm``.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, ClassVar, Literal, Self

from pydantic import BaseModel, Field, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)

from caption_agent.config_sections import (
    ImageLimits,
    LiteDrafterSettings,
    LocalRefinerSettings,
    PolicySettings,
    RankerSettings,
    RetrievalSettings,
    ServerSettings,
    TemplateRefinerSettings,
    TransformersDrafterSettings,
    VLLMDrafterSettings,
    VLLMRefinerSettings,
    VLMDecodingSettings,
    _Registered,
)
from caption_agent.errors import ConfigError

__all__ = [
    "AgentConfig",
    "DrafterSettings",
    "ImageLimits",
    "LiteDrafterSettings",
    "LocalRefinerSettings",
    "PolicySettings",
    "RankerSettings",
    "RefinerSettings",
    "RetrievalSettings",
    "ServerSettings",
    "TemplateRefinerSettings",
    "TomlSettings",
    "TransformersDrafterSettings",
    "VLLMDrafterSettings",
    "VLLMRefinerSettings",
    "VLMDecodingSettings",
    "load_for_cli",
]

_MOVED: dict[str, dict[str, str | None]] = {
    "drafter": {
        "model": "transformers.model or drafter.vllm.model",
        "prompt": "transformers.prompt or drafter.vllm.prompt",
        "decoding": "transformers.decoding or drafter.vllm.decoding",
        "temperature": "transformers.temperature or drafter.vllm.temperature",
        "max_new_tokens": "transformers.max_new_tokens or drafter.vllm.max_new_tokens",
        "device": "transformers.device",
        "dtype": "transformers.dtype",
        "trust_remote_code": "transformers.trust_remote_code",
        "base_url": "vllm.base_url",
        "api_key": "vllm.api_key",
        "timeout_s": "vllm.timeout_s",
        "max_retries": "vllm.max_retries",
        "max_concurrency": "vllm.max_concurrency",
        "ocr": "lite.ocr",
        "batch_size": "lite.batch_size or drafter.transformers.batch_size",
        "image_max_side": None,
    },
    "refiner": {
        "model": "local.model or refiner.vllm.model",
        "max_new_tokens": "local.max_new_tokens or refiner.vllm.max_new_tokens",
        "temperature": "local.temperature or refiner.vllm.temperature",
        "base_url": "vllm.base_url",
        "api_key": "vllm.api_key",
        "timeout_s": "vllm.timeout_s",
        "max_retries": "vllm.max_retries",
        "max_concurrency": "vllm.max_concurrency",
    },
}


def _refuse_moved(section: str, data: Any) -> Any:
    """Old flat keys are refused with the name of their new home (TOML key and environment variable)."""
    if not isinstance(data, dict):
        return data
    for key in data:
        if key in _MOVED[section]:
            new = _MOVED[section][key]
            if new is None:
                raise ValueError(
                    f"{section}.{key} was replaced by images.working_side (one working size for every "
                    "stage); set that instead"
                )
            first = new.split(" ")[0]
            env = f"CAPTION_AGENT_{section.upper()}__{first.replace('.', '__').upper()}"
            raise ValueError(
                f"{section}.{key} moved into the backend's own section: set {section}.{new} (environment: {env})"
            )
    return data


class _StageSettings(_Registered):
    """A stage with a backend registry: each built-in backend has its own section (a field named after it)."""

    _stage: ClassVar[str]

    @model_validator(mode="before")
    @classmethod
    def _moved(cls, data: Any) -> Any:
        return _refuse_moved(cls._stage, data)

    def section(self, name: str) -> Any:
        """The settings section of backend ``name`` (its raw ``options`` for a backend registered elsewhere)."""
        field = type(self).model_fields.get(name)
        if field is not None and isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            return getattr(self, name)
        return self.options.get(name, {})


class DrafterSettings(_StageSettings):
    """Stage 1: which drafter, how many drafts, and each backend's own settings (a key for another backend is
    refused, not ignored)."""

    _stage = "drafter"
    backend: str = Field("lite", description="Drafter registry name: lite | transformers | vllm.")
    n_candidates: int = Field(5, ge=1, le=32, description="Drafts per image.")
    fallback_to_lite: bool = Field(
        False,
        description="Use the lite drafter when the configured VLM fails to load (recorded; its drafts are judged like "
        "any other). Off by default: a configured VLM that cannot load is an error, never a silent lite draft.",
    )
    lite: LiteDrafterSettings = Field(default_factory=LiteDrafterSettings)
    transformers: TransformersDrafterSettings = Field(default_factory=TransformersDrafterSettings)
    vllm: VLLMDrafterSettings = Field(default_factory=VLLMDrafterSettings)


class RefinerSettings(_StageSettings):
    """Stage 2: the refiner chain (the primary backend, then its fallbacks in order) and each backend's own
    settings."""

    _stage = "refiner"
    backend: str = Field(
        "template",
        description="Primary refiner, a registry name: template (the offline default, chosen by measurement: "
        "examples/eval/REFINER_CHOICE.md) | local | vllm, or none (the moderated draft only; fallbacks unused).",
    )
    fallbacks: list[str] = Field(
        default_factory=lambda: ["template", "draft"],
        max_length=8,
        description="Tried in order when the primary's answer is unusable or fails moderation after its "
        "retries: refiner names, then optionally 'draft' (the moderated ranked draft, always last). Without "
        "'draft' an item no link could write goes to review. A name equal to the primary is skipped.",
    )
    on_unavailable: Literal["next", "error"] = Field(
        "next",
        description="When a link's server cannot be reached: next (the next link writes; provenance says why) | "
        "error (the item fails, retryable).",
    )
    local: LocalRefinerSettings = Field(default_factory=LocalRefinerSettings)
    vllm: VLLMRefinerSettings = Field(default_factory=VLLMRefinerSettings)
    template: TemplateRefinerSettings = Field(default_factory=TemplateRefinerSettings)

    @model_validator(mode="after")
    def _chain(self) -> Self:
        names = self.fallbacks
        if len(set(names)) != len(names):
            raise ValueError(f"refiner.fallbacks repeats a name: {names}")
        if "none" in names:
            raise ValueError("refiner.fallbacks cannot hold 'none'; leave the list empty for no fallback")
        if "draft" in names and names[-1] != "draft":
            raise ValueError("'draft' must be the last of refiner.fallbacks (nothing can follow the raw draft)")
        return self

    def chain(self) -> list[str]:
        """The refiner links in order (without 'draft'): the primary, then the fallbacks that differ from it."""
        if self.backend == "none":  # no refiner at all: the moderated draft, as before chains existed
            return []
        return [self.backend] + [n for n in self.fallbacks if n not in ("draft", self.backend)]


MAX_CONFIG_BYTES = 1024 * 1024  # a TOML config is a few KB; a larger file is the wrong file


def _env_hint(exc: SettingsError, prefix: str) -> str:
    """The environment variable a pydantic-settings parse error is about, when it names its field."""
    import re

    found = re.search(r'field "([^"]+)"', str(exc))
    return f" (environment variable {prefix}{found.group(1).upper()})" if found else ""


class TomlSettings(BaseSettings):
    """Settings read from explicit arguments, then the environment, then an optional TOML file (``load``)."""

    _what: ClassVar[str] = "configuration"
    _fix: ClassVar[str | None] = None
    _toml_path: ClassVar[Path | None] = None  # set by ``load`` for the duration of one construction

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[Any, ...]:
        toml = cls._toml_path
        sources: list[Any] = [init_settings, env_settings]
        if toml is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml))
        return tuple(sources)

    @classmethod
    def load(cls, path: str | Path | None = None, **overrides: Any) -> Self:
        """Load from an optional TOML file, the environment, then ``overrides``."""
        if path is not None and not Path(path).is_file():
            raise ConfigError(f"{cls._what} file {str(path)!r} does not exist.")
        if path is not None and Path(path).stat().st_size > MAX_CONFIG_BYTES:
            raise ConfigError(f"{cls._what} file {str(path)!r} is over {MAX_CONFIG_BYTES} bytes; is it the right file?")
        cls._toml_path = Path(path) if path is not None else None
        try:
            return cls(**overrides)
        except ValidationError as exc:  # every bad key, as "where: what"
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'value'}: {e['msg'].removeprefix('Value error, ')}"
                for e in exc.errors(include_url=False)
            )
            raise ConfigError(f"invalid {cls._what}: {problems}.", fix=cls._fix) from exc
        except SettingsError as exc:  # an environment value that is not the JSON its field needs
            raise ConfigError(
                f"invalid {cls._what}: {exc}{_env_hint(exc, str(cls.model_config.get('env_prefix', '')))}.",
                fix="write nested settings of CAPTION_AGENT_* variables as valid JSON (e.g. "
                "CAPTION_AGENT_DRAFTER='{\"backend\": \"lite\"}'), or one key per variable with '__' "
                "(CAPTION_AGENT_DRAFTER__BACKEND=lite).",
            ) from None
        except RecursionError:
            raise ConfigError(
                f"{cls._what} file {str(path)!r} nests tables or arrays deeper than it can be read.",
                fix="flatten the TOML file; settings are at most a few levels deep.",
            ) from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{cls._what} file {str(path)!r} is not valid TOML: {exc}.") from None
        finally:
            cls._toml_path = None


class AgentConfig(TomlSettings):
    """All settings of a CaptionAgent."""

    model_config = SettingsConfigDict(env_prefix="CAPTION_AGENT_", env_nested_delimiter="__", extra="forbid")

    drafter: DrafterSettings = Field(default_factory=DrafterSettings)
    ranker: RankerSettings = Field(default_factory=RankerSettings)
    retrieval: RetrievalSettings = Field(default_factory=RetrievalSettings)
    refiner: RefinerSettings = Field(default_factory=RefinerSettings)
    policy: PolicySettings = Field(default_factory=PolicySettings)
    images: ImageLimits = Field(default_factory=ImageLimits)
    prompts_dir: Path | None = Field(None, description="Folder of user presets overriding the bundled ones.")
    default_style: str = Field("alt_text", description="Preset used when a request names none.")
    default_locale: str = Field("en-US", description="Locale used when a request names none.")


def load_for_cli(
    path: str | Path | None,
    *,
    refiner: str | None = None,
    drafter: str | None = None,
    base_url: str | None = None,
    model: str | None = None,
    catalog: Path | None = None,
    vlm: str | None = None,
    vlm_url: str | None = None,
) -> AgentConfig:
    """The one validated path for command-line overrides: each flag becomes the nested key it stands for and is
    validated with the file and the environment, like any other setting. ``--model`` and ``--base-url`` belong
    to the refiner that will run (``--refiner``, else the configured one); ``--vlm`` and ``--vlm-url`` to the drafter
    (a VLM served at ``vlm_url`` by vLLM, else run in process by transformers)."""
    over: dict[str, Any] = {}
    if refiner is not None:
        over.setdefault("refiner", {})["backend"] = refiner
    if model is not None or base_url is not None:
        backend = refiner or AgentConfig.load(path).refiner.backend
        if base_url is not None and backend != "vllm":
            raise ConfigError(
                f"--base-url is a setting of the vllm refiner, but the refiner is {backend!r}.",
                fix="add --refiner vllm, or leave --base-url out.",
            )
        if backend not in ("local", "vllm"):
            raise ConfigError(
                f"--model and --base-url set the local or vllm refiner, but the refiner is {backend!r}.",
                fix="add --refiner local or --refiner vllm, or set the backend's options in the config file.",
            )
        section = over.setdefault("refiner", {}).setdefault(backend, {})
        section.update({k: v for k, v in (("model", model), ("base_url", base_url)) if v is not None})
    if drafter is not None:
        over["drafter"] = {"backend": drafter}
    if vlm is not None or vlm_url is not None:
        backend = "vllm" if vlm_url is not None else "transformers"
        section = {k: v for k, v in (("model", vlm), ("base_url", vlm_url)) if v is not None}
        over["drafter"] = {"backend": backend, backend: section}
    if catalog is not None:
        over["retrieval"] = {"catalog_dir": catalog}
    return AgentConfig.load(path, **over)
