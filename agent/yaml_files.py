"""YAML that users write (policies, style presets, model families), read with its size bounded before anything is
built: aliases let a 1 KB file stand for a tree of billions of nodes (the "billion laughs"), which every later walk
over it (validation, merging, line numbers) would expand. One loader for every such file."""

from __future__ import annotations

from typing import Any

from caption_agent.errors import ConfigError

MAX_YAML_ALIASES = 100
MAX_YAML_NODES = 100_000
MAX_YAML_BYTES = 4 * 1024 * 1024


def load_yaml(text: str, label: str, loader: Any = None) -> tuple[Any, Any]:
    """``(data, root node)`` of one YAML document, refused with ``ConfigError`` when it is over
    ``MAX_YAML_BYTES``, uses more than ``MAX_YAML_ALIASES`` aliases, would expand (aliases followed) to more than
    ``MAX_YAML_NODES`` nodes, refers to itself, or nests deeper than the parser can follow. ``loader`` is a
    ``yaml.SafeLoader`` subclass (the default: SafeLoader). Syntax errors stay ``yaml.YAMLError``."""
    import yaml

    if len(text) > MAX_YAML_BYTES:
        raise ConfigError(f"{label} is {len(text)} characters long, over the limit of {MAX_YAML_BYTES}.")
    reader = (loader or yaml.SafeLoader)(text)
    try:
        try:
            node = reader.get_single_node()
        except RecursionError:
            raise ConfigError(f"{label} nests deeper than it can be read.", fix="flatten the YAML.") from None
        if node is None:
            return None, None
        _check_expansion(node, label)
        return reader.construct_document(node), node
    finally:
        reader.dispose()


def _check_expansion(root: Any, label: str) -> None:
    """Count the nodes of ``root`` with every alias followed (iteratively: no recursion on deep trees)."""
    fix = "write the values out instead of repeating them through YAML anchors and aliases (&name / *name)."
    sizes: dict[int, int] = {}
    on_path: set[int] = set()
    references = 0
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        children = _yaml_children(node)
        if done:
            on_path.discard(key)
            sizes[key] = 1 + sum(sizes[id(c)] for c in children)
            if sizes[key] > MAX_YAML_NODES:
                raise ConfigError(f"{label} expands to over {MAX_YAML_NODES} values through its aliases.", fix=fix)
            continue
        if key in sizes:
            references += 1
            if references > MAX_YAML_ALIASES:
                raise ConfigError(f"{label} uses over {MAX_YAML_ALIASES} YAML aliases.", fix=fix)
            continue
        if key in on_path:
            raise ConfigError(f"{label} has an alias inside the value it names (a recursive YAML anchor).", fix=fix)
        on_path.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in children)


def _yaml_children(node: Any) -> list[Any]:
    value = node.value
    if isinstance(value, list):  # a sequence's items, or a mapping's (key, value) pairs
        return [part for item in value for part in (item if isinstance(item, tuple) else (item,))]
    return []
