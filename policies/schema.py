"""Policy files: strict YAML, versioned, hashed, with per-preset overrides.

A policy file names every rule (a missing rule is an error, so nothing is switched off by omission) unless it
``extends: default``, in which case it only lists what differs. Overrides merge into the base: mappings merge
key by key, lists replace, and a key written ``name+`` appends to the base list instead. Unknown keys are
errors with a "did you mean" hint, duplicate keys are errors, and every preset override is validated at load
time, so a misspelt key never silently does nothing.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Sequence, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from caption_agent.errors import ConfigError, PolicyError
from caption_agent.policies.rules.base import Rule, RuleConfig, rule_classes
from caption_agent.yaml_files import load_yaml

_FIX = (
    "correct the keys listed above (docs/policies.md lists every key; `caption-agent policy show` prints the default)."
)


def rules_model(rules: Sequence[type[Rule]]) -> type[BaseModel]:
    """The ``rules:`` mapping of a policy file, built from the rules' declarations: one field per rule, in the
    order they run, typed by its settings model; a rule that is not ``required`` defaults to its model's
    defaults (so policy files written before it existed stay valid)."""
    fields: dict[str, Any] = {
        rule.name: (rule.config_model, ... if rule.required else Field(default_factory=rule.config_model))
        for rule in rules
    }
    return create_model(
        "RulesConfig",
        __config__=ConfigDict(extra="forbid"),
        __doc__="One entry per rule; order here is the order rules run in on a caption.",
        **fields,
    )


_RULES = rule_classes()

if TYPE_CHECKING:  # the names and fields come from the rule modules; statically, a rule's settings by name
    RuleName = str

    class RulesConfig(BaseModel):
        def __getattr__(self, name: str) -> RuleConfig: ...

else:
    RuleName = Literal[tuple(rule.name for rule in _RULES)]
    RulesConfig = rules_model(_RULES)


class PresetOverride(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rules: dict[RuleName, dict[str, Any]] = Field(
        default_factory=dict, description="Per-rule keys that differ for this style preset."
    )


class PolicyFile(BaseModel):
    """The validated content of a policy file."""

    model_config = ConfigDict(extra="forbid")

    version: str = Field(pattern=r"^[\w.+-]{1,40}$", description="Bump on every change; recorded in provenance.")
    description: str = Field("", max_length=500)
    extends: Literal["default"] | None = Field(None, description="Start from the bundled default policy.")
    rules: RulesConfig
    presets: dict[str, PresetOverride] = Field(default_factory=dict, description="Style preset name -> overrides.")


@dataclass(frozen=True)
class LoadedPolicy:
    """A policy file with its identity and the rule settings for every preset it overrides."""

    policy: PolicyFile
    path: str
    hash: str
    base_rules: RulesConfig
    preset_rules: dict[str, RulesConfig]

    @property
    def version(self) -> str:
        return self.policy.version

    def rules_for(self, preset: str) -> RulesConfig:
        return self.preset_rules.get(preset, self.base_rules)


def default_policy_path() -> Path:
    return Path(str(resources.files("caption_agent.policies") / "default.yaml"))


def load_policy(path: Path | str | None = None) -> LoadedPolicy:
    """Read, merge and validate a policy file (the bundled default when ``path`` is None)."""
    path = Path(path) if path is not None else default_policy_path()
    if not path.is_file():
        raise PolicyError(
            f"policy file {str(path)!r} does not exist.",
            fix="pass an existing YAML file, or leave it unset to use the bundled default.",
        )
    data = path.read_bytes()
    raw, lines = _parse(data, str(path))
    digest = hashlib.sha256(data)
    if isinstance(raw, dict) and raw.get("extends") == "default":
        base_bytes = default_policy_path().read_bytes()
        base, _ = _parse(base_bytes, "default.yaml")
        digest = hashlib.sha256(base_bytes + b"\n# extended by\n" + data)
        raw = merge(base, {k: v for k, v in raw.items() if k != "extends"}) | {"extends": "default"}
    try:
        policy = PolicyFile.model_validate(raw)
    except ValidationError as exc:
        raise PolicyError(f"policy file {str(path)!r} is invalid:\n{explain(exc, lines)}\n", fix=_FIX) from None
    rules_raw = raw["rules"]
    presets: dict[str, RulesConfig] = {}
    problems = []
    for name, override in policy.presets.items():
        try:
            presets[name] = RulesConfig.model_validate(merge(rules_raw, override.rules))
        except ValidationError as exc:
            problems.append(explain(exc, lines, prefix=("presets", name, "rules")))
    if problems:
        raise PolicyError(
            f"policy file {str(path)!r}: preset overrides are invalid:\n" + "\n".join(problems) + "\n", fix=_FIX
        )
    return LoadedPolicy(policy, str(path), digest.hexdigest(), policy.rules, presets)


def merge(base: Any, override: Any) -> Any:
    """Deep merge: mappings key by key, lists and scalars replaced, ``key+`` appends to a list."""
    if not isinstance(base, dict) or not isinstance(override, dict):
        return copy.deepcopy(override)
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(key, str) and key.endswith("+"):
            name = key[:-1]
            old = out.get(name, [])
            if not isinstance(old, list) or not isinstance(value, list):
                out[key] = value  # left for validation to reject with the key's name
                continue
            out[name] = old + [v for v in value if v not in old]
        else:
            out[key] = merge(out[key], value) if key in out else copy.deepcopy(value)
    return out


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (PyYAML keeps the last one silently)."""


def _mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def _parse(data: bytes, label: str) -> tuple[Any, dict[tuple[Any, ...], int]]:
    try:
        text = data.decode("utf-8")
        # Bounded: a few lines of aliases would otherwise expand to gigabytes in the walk below.
        raw, node = load_yaml(text, f"policy file {label!r}", _StrictLoader)
        lines: dict[tuple[Any, ...], int] = {}
        _walk(node, (), lines)
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise PolicyError(f"policy file {label!r} is not valid YAML: {exc}") from None
    except ConfigError as exc:
        raise PolicyError(exc.reason, fix=exc.fix) from None
    if not isinstance(raw, dict):
        raise PolicyError(f"policy file {label!r} must be a YAML mapping with version and rules.")
    return raw, lines


def _walk(node: Any, path: tuple[Any, ...], lines: dict[tuple[Any, ...], int]) -> None:
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            lines[path + (key.value,)] = key.start_mark.line + 1
            _walk(value, path + (key.value,), lines)
    elif isinstance(node, yaml.SequenceNode):
        for i, value in enumerate(node.value):
            lines[path + (i,)] = value.start_mark.line + 1
            _walk(value, path + (i,), lines)


def explain(exc: ValidationError, lines: dict[tuple[Any, ...], int] | None = None, prefix: tuple[Any, ...] = ()) -> str:
    """One line per problem: where (key path and line), what, and a suggestion for misspelt keys."""
    out = []
    for err in exc.errors():
        loc = prefix + tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        where = ".".join(str(p) for p in loc) or "(top level)"
        line = _line(lines or {}, loc)
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            allowed = _allowed_keys(
                loc[len(prefix) : -1] if prefix else loc[:-1], RulesConfig if prefix else PolicyFile
            )
            close = difflib.get_close_matches(str(loc[-1]), allowed, n=1, cutoff=0.6)
            msg = f"unknown key {loc[-1]!r}" + (
                f"; did you mean {close[0]!r}?" if close else f"; allowed: {', '.join(sorted(allowed))}"
            )
        elif err["type"] == "missing":
            msg = "required key is missing (policy files list every rule unless they use `extends: default`)"
        elif err["type"] == "literal_error":
            msg = f"{msg} (got {err.get('input')!r})"
        out.append(f"  - {where}{f' (line {line})' if line else ''}: {msg}")
    return "\n".join(out)


def _line(lines: dict[tuple[Any, ...], int], loc: tuple[Any, ...]) -> int | None:
    for n in range(len(loc), 0, -1):
        if loc[:n] in lines:
            return lines[loc[:n]]
    return None


def _allowed_keys(loc: tuple[Any, ...], model: Any) -> list[str]:
    """Field names of the model found by following ``loc`` from ``model``."""
    current: Any = model
    for part in loc:
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(str(part))
            if field is None:
                return []
            current = field.annotation
        elif get_origin(current) is dict:
            current = get_args(current)[1]
        else:
            return []
        while get_origin(current) is not None and get_origin(current) is not dict:
            args = [a for a in get_args(current) if a is not type(None)]
            current = args[0] if args else current
            if get_origin(current) is Literal:
                return []
    return list(current.model_fields) if isinstance(current, type) and issubclass(current, BaseModel) else []
