"""Style presets and prompt templates, shipped as data files and overridable from a user folder."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal, Sequence

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from caption_agent.errors import ConfigError, UnknownStyleError
from caption_agent.yaml_files import load_yaml

# One import name: pyproject.toml maps the folder prompts/ to `caption_agent.prompts`. Imported by its folder's
# name (from the repository root) it would be a second copy of the package beside the installed one.
if __name__ != "caption_agent.prompts":
    raise ImportError(
        f"`import {__name__}` loads the repository folder prompts/, not the package: "
        "import `caption_agent.prompts` instead (install the repository first: `make setup`, or `pip install -e .`)."
    )

__all__ = [
    "Budget",
    "CaptionRequires",
    "StylePreset",
    "PromptBundle",
    "list_styles",
    "load_preset",
    "render_messages",
    "prompt_hash",
]

# Scripts written without spaces between words: budgets count characters, never words.
UNSPACED_SCRIPTS = frozenset({"Hani", "Hans", "Hant", "Jpan", "Kore", "Thai", "Laoo", "Khmr", "Mymr"})
Register = Literal["formal", "informal", "neutral"]


class Budget(BaseModel):
    """Length limits for one language, script or locale; unset keys keep the preset's."""

    model_config = ConfigDict(extra="forbid")

    max_chars: int | None = Field(None, ge=2, le=5000, description="Hard length limit in characters.")
    min_chars: int | None = Field(None, ge=0, le=5000, description="Shorter output is unusable.")
    max_words: int | None = Field(None, ge=1, description="Word limit (never applied to unspaced scripts).")


class CaptionRequires(BaseModel):
    """What a caption of this style must carry before it may be published (``ok``); checked by the policy's
    ``informative`` rule. A caption that lacks it is held for review with the reason."""

    model_config = ConfigDict(extra="forbid")

    subject: bool = Field(
        False, description="A named subject (an object, a person or a scene), never colours or tones alone."
    )
    product_name: Literal["never", "with_sku", "always"] = Field(
        "never",
        description="The product's name (the catalog title of the requested sku): 'with_sku' when the request "
        "names a sku, 'always' (no sku: held, there is no product to name), 'never'.",
    )
    sentence: bool = Field(False, description="Whole sentences: nothing cut off mid-sentence.")


class StylePreset(BaseModel):
    """A style preset file (``presets/NAME.yaml``)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str = Field(description="Preset name; must match the file name.", pattern=r"^[a-z][a-z0-9_]{1,40}$")
    version: str = Field("1", description="Bump when the wording changes; recorded in provenance.")
    description: str = Field(description="One line shown by `caption-agent styles`.")
    max_chars: int = Field(ge=10, le=5000, description="Hard length limit, enforced after generation.")
    min_chars: int = Field(0, ge=0, description="Shorter output is treated as unusable.")
    max_words: int | None = Field(None, ge=1, description="Optional word limit.")
    max_clip_tokens: int | None = Field(None, ge=8, le=77, description="Token limit counted with CLIP's tokenizer.")
    banned_openings: list[str] = Field(default_factory=list, description="Case-insensitive forbidden starts.")
    banned_phrases: list[str] = Field(default_factory=list, description="Case-insensitive forbidden phrases.")
    use_facts: bool = Field(True, description="Pass catalog facts to the refiner.")
    instructions: str = Field(description="Style instructions placed in the system prompt.")
    budgets: dict[str, Budget] = Field(
        default_factory=dict,
        description="Length limits per locale ('de-CH'), language ('de') or script ('Jpan', 'Hans', 'Latn'), "
        "first match in that order; German runs longer, short languages need lower minimums, and CJK scripts "
        "count characters (no word limit).",
    )
    reader_register: dict[str, Register] = Field(
        default_factory=dict,
        alias="register",
        description="Language ('de') -> how the reader is addressed: formal (Sie, vous, usted), informal (du, tu, "
        "tú) or neutral (not addressed). Templates and LLM prompts follow it; the glossary rule checks it.",
    )

    requires: CaptionRequires = Field(
        default_factory=CaptionRequires, description="What a publishable caption of this style must carry."
    )

    def limits(self, locale: str) -> Budget:
        """The resolved limits for ``locale`` (every key set except max_words where none applies)."""
        from caption_agent.locales import writing_system

        lang, script = writing_system(locale)
        found = next((self.budgets[k] for k in (locale, lang, script) if k in self.budgets), Budget())
        words = None if script in UNSPACED_SCRIPTS else (found.max_words or self.max_words)
        return Budget(
            max_chars=min(found.max_chars or self.max_chars, 5000),
            min_chars=self.min_chars if found.min_chars is None else found.min_chars,
            max_words=words,
        )

    def register_for(self, locale: str) -> Register:
        """How the reader is addressed in ``locale`` (neutral unless the preset says)."""
        from caption_agent.locales import language_code

        table = self.reader_register
        return table.get(language_code(locale), table.get("default", "neutral"))


@dataclass(frozen=True)
class PromptBundle:
    """A rendered prompt: messages plus the hash that identifies template + preset."""

    messages: list[dict[str, str]]
    preset: StylePreset
    hash: str


def _bundled_dir() -> Path:
    return Path(str(resources.files("caption_agent.prompts")))


def _preset_dirs(user_dir: Path | None) -> list[Path]:
    dirs = [_bundled_dir() / "presets"]
    if user_dir is not None:
        if not Path(user_dir).is_dir():
            raise ConfigError(
                f"prompts folder {str(user_dir)!r} does not exist.",
                fix="pass a folder of YAML presets (see `caption-agent styles`), or leave it unset.",
            )
        dirs.insert(0, Path(user_dir))
    return dirs


def list_styles(user_dir: Path | None = None) -> dict[str, StylePreset]:
    """All presets by name; a user folder's preset overrides a bundled one of the same name."""
    found: dict[str, StylePreset] = {}
    for folder in reversed(_preset_dirs(user_dir)):
        for path in sorted(folder.glob("*.yaml")):
            found[path.stem] = _load_file(path)
    return dict(sorted(found.items()))


@lru_cache(maxsize=64)
def _load_file(path: Path) -> StylePreset:
    try:
        data = load_yaml(path.read_text(encoding="utf-8"), f"style preset {str(path)!r}")[0] or {}
        preset = StylePreset.model_validate(data)
    except (yaml.YAMLError, ValidationError) as exc:
        raise ConfigError(
            f"style preset {str(path)!r} is invalid: {exc}", fix="compare it with a bundled preset in prompts/presets/."
        ) from exc
    if preset.name != path.stem:
        raise ConfigError(f"style preset {str(path)!r} is named {preset.name!r}; the file name must match.")
    return preset


def load_preset(name: str, user_dir: Path | None = None) -> StylePreset:
    """Load one preset by name, raising UnknownStyleError with the available names."""
    for folder in _preset_dirs(user_dir):
        path = folder / f"{name}.yaml"
        if path.is_file():
            return _load_file(path)
    names = ", ".join(list_styles(user_dir))
    raise UnknownStyleError(f"unknown style {name!r}; available: {names}.")


@lru_cache(maxsize=4)
def _templates() -> tuple[Any, Any, str]:
    import jinja2

    env = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=False)
    folder = _bundled_dir() / "templates"
    system_src = (folder / "system.j2").read_text(encoding="utf-8")
    user_src = (folder / "user.j2").read_text(encoding="utf-8")
    digest = hashlib.sha256((system_src + "\0" + user_src).encode()).hexdigest()
    return env.from_string(system_src), env.from_string(user_src), digest


def prompt_hash(preset: StylePreset) -> str:
    """Hash of the templates plus the preset, recorded in provenance."""
    _, _, template_digest = _templates()
    return hashlib.sha256((template_digest + preset.model_dump_json()).encode()).hexdigest()[:16]


def render_messages(
    preset: StylePreset,
    *,
    draft: str,
    facts: Sequence[Any] = (),
    locale: str = "en-US",
    language: str = "English",
    max_chars: int | None = None,
    image_text: str = "",
    feedback: Sequence[str] = (),
    old_caption: str = "",
    constraints: Sequence[str] = (),
) -> PromptBundle:
    """Render the chat messages for one refinement.

    The system message depends only on the preset, so servers with prefix caching reuse it across requests.
    Facts and image text must already be neutralised by the policy engine; here they are only delimited.
    """
    system_t, user_t, _ = _templates()
    budget = preset.limits(locale).max_chars or preset.max_chars
    limit = min(max_chars or budget, budget)
    system = system_t.render(preset=preset)
    user = user_t.render(
        draft=_delimit_safe(draft),
        facts=[_SafeFact(f) for f in facts] if preset.use_facts else [],
        locale=locale,
        language=language,
        max_chars=limit,
        image_text=_delimit_safe(image_text),
        old_caption=_delimit_safe(old_caption),
        feedback=list(feedback),
        constraints=[_delimit_safe(c) for c in constraints],
    )
    return PromptBundle(
        messages=[{"role": "system", "content": system}, {"role": "user", "content": user}],
        preset=preset,
        hash=prompt_hash(preset),
    )


def _delimit_safe(text: str) -> str:
    """Untrusted text must not close our delimiters and escape into the prompt."""
    return text.replace("<", "‹").replace(">", "›")


class _SafeFact:
    def __init__(self, fact: Any) -> None:
        self.id = _delimit_safe(str(fact.id))
        self.text = _delimit_safe(str(fact.text))
