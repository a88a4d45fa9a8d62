"""What every command line (``caption-agent`` and its sub-apps for jobs, service and eval) shares.

* Checks run on options and inputs before any model loads: each refuses a bad value at once with one line that
  names the problem and the fix (a "did you mean" where a name is close to a known one).
* ``Tally``: the human summary on stderr after a command that captions: counts per status, then each failure
  (item, reason, fix), grouped by cause when there are many. The JSON records stay as they are.

Nothing here imports a model library.
"""

from __future__ import annotations

import difflib
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Iterable, Mapping, Optional, Sequence

import typer

from caption_agent.errors import CaptionAgentError, InvalidLocaleError, UnknownStyleError

INGEST_HINT = "caption-agent ingest examples/catalog.jsonl --catalog {path}"

# The options that choose the stages, the same on `caption`, `batch` and `serve`.
CatalogOpt = Annotated[Optional[Path], typer.Option("--catalog", help="Embedded Chroma folder made by `ingest`.")]
RefinerOpt = Annotated[
    Optional[str], typer.Option("--refiner", help="Refiner: template | local | vllm | none; default: template.")
]
ModelOpt = Annotated[Optional[str], typer.Option("--model", help="Refiner model (the served name for vllm).")]
BaseUrlOpt = Annotated[
    Optional[str], typer.Option("--base-url", help="Refiner vLLM server, e.g. http://127.0.0.1:18080/v1.")
]
VlmOpt = Annotated[
    Optional[str], typer.Option("--vlm", help="Drafter VLM: a preset (`caption-agent models list`) or a hub id.")
]
VlmUrlOpt = Annotated[
    Optional[str], typer.Option("--vlm-url", help="Drafter vLLM server serving --vlm, e.g. http://127.0.0.1:8000/v1.")
]
FailOnReviewOpt = Annotated[bool, typer.Option("--fail-on-review", help="Exit 3 when any item is held for review.")]


def load_checked(
    config: Path | None,
    *,
    catalog: Path | None = None,
    refiner: str | None = None,
    model: str | None = None,
    base_url: str | None = None,
    vlm: str | None = None,
    vlm_url: str | None = None,
    drafter: str | None = None,
) -> Any:
    """The agent config from a command's stage options, with every check that needs no model (the catalog folder,
    the VLM name, each flag validated as the setting it stands for)."""
    from caption_agent.config import load_for_cli

    check_catalog(catalog)
    check_vlm(vlm, vlm_url, drafter)
    cfg = load_for_cli(
        config,
        refiner=refiner,
        drafter=drafter,
        catalog=catalog,
        model=model,
        base_url=base_url,
        vlm=vlm,
        vlm_url=vlm_url,
    )
    check_catalog(cfg.retrieval.catalog_dir)
    return cfg


class UsageError(CaptionAgentError):
    """A command-line option or input that cannot work; raised before anything is loaded."""

    fix = "run the command with --help to see its options."


def did_you_mean(value: str, choices: Iterable[str], *, lower: bool = True) -> str:
    """`` did you mean 'x'?`` for the closest of ``choices`` (difflib), or an empty string."""
    pool = list(dict.fromkeys(choices))
    keyed = {c.lower() if lower else c: c for c in pool}
    found = difflib.get_close_matches(value.lower() if lower else value, list(keyed), n=1, cutoff=0.6)
    return f" did you mean {keyed[found[0]]!r}?" if found else ""


def _hinted(message: str, hint: str) -> str:
    return f"{message};{hint}" if hint else f"{message}."


def check_style(name: str, prompts_dir: Path | None = None) -> str:
    """``name`` if it is a style preset (bundled or in ``prompts_dir``); else UnknownStyleError with a suggestion."""
    from caption_agent.prompts import list_styles

    known = list(list_styles(prompts_dir))
    if name in known:
        return name
    raise UnknownStyleError(
        _hinted(f"unknown style {name!r}", did_you_mean(name, known)) + f" (styles: {', '.join(known)}).",
        fix="pass one of them with --style, or run `caption-agent styles` to see what each writes.",
    )


def check_locale(tag: str) -> str:
    """The canonical form of a BCP-47 ``tag`` (``de_de`` -> ``de-DE``); else InvalidLocaleError with a suggestion."""
    from caption_agent.locales import normalize_locale

    try:
        return normalize_locale(tag)
    except InvalidLocaleError:
        from babel.localedata import locale_identifiers

        known = [i.replace("_", "-") for i in locale_identifiers()]
        hint = did_you_mean(tag.replace("_", "-"), known)
        raise InvalidLocaleError(_hinted(f"locale {tag!r} is not a BCP-47 locale babel knows", hint)) from None


def check_files(paths: Sequence[Path], what: str, *, folder_hint: str = "") -> None:
    """Every path exists and is a file (1-based argument numbers in the message)."""
    for number, path in enumerate(paths, 1):
        where = f" (argument {number} of {len(paths)})" if len(paths) > 1 else ""
        if path.is_dir():
            raise UsageError(f"{what} {str(path)!r}{where} is a folder, not a file.", fix=folder_hint or None)
        if not path.is_file():
            siblings = [p.name for p in path.parent.glob("*")] if path.parent.is_dir() else []
            hint = did_you_mean(path.name, siblings, lower=False)
            raise UsageError(
                _hinted(f"{what} {str(path)!r}{where} does not exist", hint),
                fix="check the path (relative paths start at the current folder).",
            )


def check_catalog(path: Path | None) -> None:
    """A ``--catalog`` folder must exist (a typo would otherwise caption without any product facts)."""
    if path is None or path.is_dir():
        return
    what = "is a file, not a catalog folder" if path.exists() else "does not exist"
    raise UsageError(
        f"catalog folder {str(path)!r} {what}.",
        fix=f"create it from your product file, e.g. `{INGEST_HINT.format(path=path)}`, or correct the path.",
    )


def check_vlm(name: str | None, url: str | None, drafter: str | None) -> None:
    """``--vlm`` names a preset (`caption-agent models list`), a hub id (``owner/name``) or a folder."""
    if drafter is not None and (name or url):
        wanted = "vllm" if url else "transformers"
        if drafter != wanted:
            raise UsageError(
                f"--drafter {drafter} contradicts --vlm/--vlm-url (they choose the {wanted} drafter).",
                fix="leave --drafter out when you give --vlm or --vlm-url.",
            )
    if url is not None and not url.startswith(("http://", "https://")):
        raise UsageError(f"--vlm-url {url!r} is not an http(s) URL.", fix="pass e.g. http://127.0.0.1:8000/v1.")
    if not name or "/" in name or Path(name).exists():
        return
    from caption_agent.drafters.presets import load_presets

    presets = list(load_presets())
    if name in presets or url is not None:  # a vLLM server may serve a model under any name
        return
    raise UsageError(
        _hinted(
            f"--vlm {name!r} is neither a preset nor a hub id (owner/name) nor a folder", did_you_mean(name, presets)
        ),
        fix="run `caption-agent models list` for the presets, or pass a hub id such as Salesforce/blip-image-"
        "captioning-base.",
    )


EXAMPLES = 3  # items named per group; the rest are counted


@dataclass
class _Group:
    reason: str
    fix: str
    items: list[str] = field(default_factory=list)
    count: int = 0


@dataclass
class Tally:
    """Counts per status and the failures grouped by (error type, reason); bounded memory for any batch size."""

    statuses: Counter[str] = field(default_factory=Counter)
    errors: dict[tuple[str, str], _Group] = field(default_factory=dict)
    held: Counter[str] = field(default_factory=Counter)

    def add(self, item: str, status: str, error: Mapping[str, Any] | None = None, reasons: Any = ()) -> None:
        self.statuses[status] += 1
        for reason in reasons or ():
            code = reason.get("code") if isinstance(reason, Mapping) else getattr(reason, "code", "")
            self.held[str(code or "unspecified")] += 1
        if status != "error" or not error:
            return
        message = str(error.get("message", ""))
        reason, _, fix = message.partition(" Fix: ")
        kind = str(error.get("type", "Error"))
        # Group by cause: the reason without the names it quotes, so 500 unreadable files make one group.
        key = (kind, re.sub(r"'[^']*'", "'…'", reason))
        group = self.errors.setdefault(key, _Group(reason=reason, fix=fix.strip()))
        group.count += 1
        if len(group.items) < EXAMPLES:
            group.items.append(item)

    def add_result(self, result: Any, label: str) -> None:
        error = result.error.model_dump() if result.error is not None else None
        self.add(label, result.status, error, result.reasons)

    @property
    def total(self) -> int:
        return sum(self.statuses.values())

    def line(self) -> str:
        parts = [f"{self.statuses.get(s, 0)} {s}" for s in ("ok", "review", "blocked", "error")]
        parts += [f"{n} {s}" for s, n in self.statuses.items() if s not in ("ok", "review", "blocked", "error")]
        return f"{self.total} item(s): " + ", ".join(parts)

    def failure_lines(self) -> list[str]:
        """Each group of failures (most frequent first): its type, count, first items, reason; then its fix."""
        lines = []
        for (kind, _), group in sorted(self.errors.items(), key=lambda kv: -kv[1].count):
            more = f" and {group.count - len(group.items)} more" if group.count > len(group.items) else ""
            names = ", ".join(repr(i) for i in group.items if i) or "items"
            lines.append(f"  error ({kind}) x{group.count}: {names}{more}: {group.reason}")
            if group.fix:
                lines.append(f"    fix: {group.fix}")
        return lines

    def print(self, *, fail_on_review: bool = False) -> int:
        """Write the summary to stderr; return the exit code (0 done, 1 some items failed, 3 some held for review
        with ``fail_on_review``)."""
        failed = self.statuses.get("error", 0)
        held = self.statuses.get("review", 0)
        colour = typer.colors.YELLOW if failed or (held and fail_on_review) else typer.colors.GREEN
        typer.secho(self.line(), err=True, fg=colour)
        for line in self.failure_lines():
            typer.secho(line, err=True, fg=None if line.startswith("    fix:") else colour)
        if held and self.held:
            top = ", ".join(f"{code} x{n}" for code, n in self.held.most_common(5))
            typer.echo(f"  held for review: {top}", err=True)
        if failed:
            return 1
        return 3 if held and fail_on_review else 0
