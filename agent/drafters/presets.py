"""Captioning VLMs by name: a registry of presets read from data files (one YAML file per model family).

A preset gives the hub id (and revision when verified), a task prompt per style preset, processor limits, decoding
defaults, the dtype, a memory estimate, the `vllm serve` command (or why vLLM cannot serve it), gated access and
the licence from the public model card. ``drafter.transformers.model = "florence-2-base"`` resolves here; a hub id
or a folder is used as given. Nothing here imports torch or transformers.
"""

from __future__ import annotations

import functools
import os
import string
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from caption_agent.errors import BackendUnavailableError, ConfigError
from caption_agent.yaml_files import load_yaml

DATA_PACKAGE = "caption_agent.drafters"
DATA_DIR = ("data", "vlm_presets")
DOWNLOAD_COMMAND = "caption-agent models download {name}"
# Files a drafter needs: weights, configs, tokenizer, chat template. Not ONNX exports, not remote code.
ALLOW_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model", "*.jinja", "*.tiktoken"]
DTYPE_BYTES = {"float32": 4.0, "float16": 2.0, "bfloat16": 2.0}


class DecodingDefaults(BaseModel):
    """How the preset drafts unless the config says otherwise."""

    model_config = ConfigDict(extra="forbid")
    decoding: Literal["beam", "sample"] = Field("beam", description="beam search or sampling for N candidates.")
    max_new_tokens: int = Field(40, ge=4, le=512, description="Token budget of one draft.")
    temperature: float = Field(0.8, gt=0, le=2, description="Sampling temperature (decoding = sample).")


class _Common(BaseModel):
    """Fields a family file sets for all its presets and a preset may override."""

    model_config = ConfigDict(extra="forbid")
    licence: str | None = Field(None, description="Licence on the public model card.")
    card: str | None = Field(None, description="URL of the public model card.")
    gated: bool | None = Field(None, description="The hub asks users to accept terms before download.")
    dtype: Literal["float32", "float16", "bfloat16"] | None = Field(None, description="Weights dtype on a GPU.")
    chat: bool | None = Field(None, description="Prompted through the processor's chat template.")
    needs_torchvision: bool | None = Field(None, description="The processor imports torchvision (video processor).")
    prompts: dict[str, str] | None = Field(None, description="Task prompt per style preset; 'default' is required.")
    decoding: DecodingDefaults | None = None
    processor: dict[str, Any] | None = Field(None, description="Image processor limits, passed at every call.")
    vllm: str | None = Field(None, description="`vllm serve` template ($hub_id, $name, $revision); null: no vLLM.")
    vllm_note: str | None = Field(None, description="Why vLLM cannot serve it, or what to add.")
    trust_remote_code: bool | None = Field(None, description="Needs code from the model repo (never by default).")


class _PresetEntry(_Common):
    name: str = Field(description="Registry name (`caption-agent models show NAME`).")
    hub_id: str = Field(description="Hugging Face hub repository id.")
    revision: str | None = Field(None, description="Pinned commit, when verified; unset = the repo's main branch.")
    params_b: float = Field(gt=0, description="Parameters, in billions (model card).")
    memory_gb: float | None = Field(None, gt=0, description="GPU memory estimate; computed when unset.")


class _FamilyFile(_Common):
    family: str
    model_type: str = Field(description="transformers config model_type of every preset in the file.")
    architecture: str = Field(description="transformers model class (AutoModelForImageTextToText maps to it).")
    presets: list[_PresetEntry] = Field(min_length=1)


class VLMPreset(BaseModel):
    """One captioning model by name, with everything a drafter or a `vllm serve` needs to run it well."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    family: str
    hub_id: str
    revision: str | None
    model_type: str
    architecture: str
    params_b: float
    dtype: Literal["float32", "float16", "bfloat16"]
    memory_gb: float
    licence: str
    card: str
    gated: bool
    chat: bool
    needs_torchvision: bool
    trust_remote_code: bool
    prompts: dict[str, str]
    decoding: DecodingDefaults
    processor: dict[str, Any]
    vllm: str | None
    vllm_note: str | None
    source: str = Field(description="The data file it came from.")

    def prompt_for(self, style: str | None = None) -> str:
        """The task prompt for ``style`` (a style preset name), else the preset's default prompt."""
        return self.prompts.get(style or "default", self.prompts["default"])

    @property
    def vllm_command(self) -> str:
        """The `vllm serve` command line, or "vLLM: unsupported (...)"."""
        if self.vllm is None:
            return self.vllm_note or "vLLM: unsupported"
        revision = f" --revision {self.revision}" if self.revision else ""
        cmd = string.Template(self.vllm).safe_substitute(hub_id=self.hub_id, name=self.name, revision=self.revision)
        return cmd + revision + f" --dtype {self.dtype}"

    @property
    def download_command(self) -> str:
        return DOWNLOAD_COMMAND.format(name=self.name)

    def summary(self) -> dict[str, Any]:
        """The JSON of `caption-agent models list --json`: every field plus the rendered commands."""
        return {
            **self.model_dump(mode="json"),
            "vllm_command": self.vllm_command,
            "download_command": self.download_command,
        }


def estimate_memory_gb(params_b: float, dtype: str) -> float:
    """Weights plus ~20 % for activations, KV cache of a short caption and the CUDA context (~0.5 GB)."""
    return round(params_b * DTYPE_BYTES[dtype] * 1.2 + 0.5, 1)


def _expand(family: _FamilyFile, entry: _PresetEntry, source: str) -> VLMPreset:
    def pick(field: str, default: Any) -> Any:
        own = getattr(entry, field)
        if own is not None:
            return own
        shared = getattr(family, field)
        return shared if shared is not None else default

    prompts = {**(family.prompts or {}), **(entry.prompts or {})}
    if "default" not in prompts:
        raise ConfigError(f"VLM preset {entry.name!r} in {source} has no 'default' prompt.")
    dtype = pick("dtype", "bfloat16")
    return VLMPreset(
        name=entry.name,
        family=family.family,
        hub_id=entry.hub_id,
        revision=entry.revision,
        model_type=family.model_type,
        architecture=family.architecture,
        params_b=entry.params_b,
        dtype=dtype,
        memory_gb=entry.memory_gb or estimate_memory_gb(entry.params_b, dtype),
        licence=pick("licence", "see the model card"),
        card=pick("card", f"https://huggingface.co/{entry.hub_id}"),
        gated=pick("gated", False),
        chat=pick("chat", False),
        needs_torchvision=pick("needs_torchvision", False),
        trust_remote_code=pick("trust_remote_code", False),
        prompts=prompts,
        decoding=pick("decoding", DecodingDefaults()),
        processor={**(family.processor or {}), **(entry.processor or {})},
        vllm=pick("vllm", None),
        vllm_note=pick("vllm_note", None),
        source=source,
    )


def _read_family(text: str, source: str) -> dict[str, VLMPreset]:
    try:
        family = _FamilyFile.model_validate(load_yaml(text, f"VLM preset file {source}")[0])
    except (yaml.YAMLError, ValidationError) as exc:
        raise ConfigError(f"invalid VLM preset file {source}: {exc}") from exc
    names = [entry.name for entry in family.presets]
    if len(set(names)) != len(names):
        raise ConfigError(f"invalid VLM preset file {source}: a preset name is used twice ({', '.join(names)}).")
    return {entry.name: _expand(family, entry, source) for entry in family.presets}


def load_presets(user_dir: str | Path | None = None) -> dict[str, VLMPreset]:
    """Every preset by name: the bundled files, then ``user_dir`` (or CAPTION_AGENT_VLM_PRESETS), whose files may
    add presets or override a bundled name (read at every call; the bundled ones once)."""
    found = dict(_bundled())
    extra = user_dir or os.environ.get("CAPTION_AGENT_VLM_PRESETS") or None
    if extra:
        for path in sorted(Path(extra).glob("*.yaml")):
            found.update(_read_family(path.read_text(encoding="utf-8"), str(path)))
    return dict(sorted(found.items()))


@functools.lru_cache(maxsize=1)
def _bundled() -> dict[str, VLMPreset]:
    found: dict[str, VLMPreset] = {}
    folder = resources.files(DATA_PACKAGE).joinpath(*DATA_DIR)
    for entry in sorted(folder.iterdir(), key=lambda f: f.name):
        if entry.name.endswith(".yaml"):
            for name, preset in _read_family(entry.read_text(encoding="utf-8"), entry.name).items():
                if name in found:
                    raise ConfigError(f"VLM preset {name!r} is defined in {found[name].source} and {entry.name}.")
                found[name] = preset
    return found


def get_preset(name: str) -> VLMPreset:
    """The preset called ``name``; a ConfigError listing the known names otherwise."""
    presets = load_presets()
    if name not in presets:
        raise ConfigError(
            f"unknown VLM preset {name!r}.",
            fix=f"run `caption-agent models list`; known presets: {', '.join(presets)}.",
        )
    return presets[name]


def task_prompt(preset: VLMPreset | None, settings: Any, style: str | None, fallback: str) -> str:
    """A VLM drafter's prompt for a request in ``style``: the config's own ``prompt`` when set; else the preset's
    prompt for the config's ``prompt_style`` when set, else for ``style`` (the preset's default prompt when it has
    none for that style); ``fallback`` without a preset."""
    if settings.prompt is not None:
        return str(settings.prompt)
    if preset is None:
        return fallback
    return preset.prompt_for(settings.prompt_style or style)


def find_preset(model: str) -> VLMPreset | None:
    """The preset ``model`` names, or None for a hub id or a local folder (an existing path always wins)."""
    if os.sep in model or "/" in model or Path(model).exists():
        return None
    return load_presets().get(model)


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


def fetch(preset: VLMPreset, cache_dir: str | None = None, *, offline: bool | None = None) -> Path:
    """The local snapshot folder of ``preset``: downloaded on first use (with a progress bar), read from the
    Hugging Face cache afterwards. Offline and not cached: BackendUnavailableError naming the preset and the
    command that downloads it."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import GatedRepoError, LocalEntryNotFoundError

    offline = hub_offline() if offline is None else offline
    try:
        path = snapshot_download(
            preset.hub_id,
            revision=preset.revision,
            cache_dir=cache_dir,
            allow_patterns=ALLOW_PATTERNS,
            local_files_only=offline,
        )
    except GatedRepoError as exc:
        raise BackendUnavailableError(
            f"VLM preset {preset.name!r} ({preset.hub_id}) is gated on the Hugging Face hub.",
            fix=f"accept the licence ({preset.licence}) at {preset.card}, run `hf auth login`, then "
            f"`{preset.download_command}`.",
        ) from exc
    except (LocalEntryNotFoundError, OSError, ValueError) as exc:
        where = "is not in the local Hugging Face cache and HF_HUB_OFFLINE=1" if offline else "could not be downloaded"
        raise BackendUnavailableError(
            f"VLM preset {preset.name!r} ({preset.hub_id}"
            f"{'@' + preset.revision if preset.revision else ''}) {where}: {_first_line(exc)}",
            fix=f"with network access run `{preset.download_command}` once (or `hf download {preset.hub_id}`), "
            "then run offline; or point drafter.transformers.model at a local folder.",
        ) from exc
    return Path(path)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
