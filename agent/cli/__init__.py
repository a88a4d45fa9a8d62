"""The `caption-agent` command line (Typer). Commands are thin wrappers over library calls."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from pydantic import ValidationError

from caption_agent.cli import help as _help
from caption_agent.cli.cache import cache_app
from caption_agent.cli.catalog import ingest
from caption_agent.cli.models import models_app
from caption_agent.cli.policy import policy_app, review_app
from caption_agent.errors import CaptionAgentError, describe
from caption_agent.eval.cli import eval_app, eval_policies
from caption_agent.jobs.cli import batch_app
from caption_agent.service.cli import serve
from caption_agent.usage import BaseUrlOpt, CatalogOpt, FailOnReviewOpt, ModelOpt, RefinerOpt, VlmOpt, VlmUrlOpt

_help.apply()
app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode=None,  # plain click help: wrapped at the terminal's width, never cut (agent/cli/help.py)
    help="Write publishable image captions: draft, rank, ground, refine, moderate.",
)

ConfigOpt = Annotated[Optional[Path], typer.Option("--config", "-c", help="TOML config file.")]


def _fail(exc: Exception) -> None:
    typer.secho(f"error: {describe(exc)}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"caption-agent {version('caption-agent')}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Write publishable image captions: draft, rank, ground, refine, moderate."""


ImagesArg = Annotated[
    list[Path], typer.Argument(metavar="IMAGE...", help="Image files to caption.", show_default=False)
]
StyleOpt = Annotated[
    Optional[str],
    typer.Option("--style", "-s", help="Style preset (`caption-agent styles`); default: alt_text (config)."),
]
LocaleOpt = Annotated[
    Optional[str], typer.Option("--locale", "-l", help="BCP-47 output locale; default: en-US (config).")
]
CandidatesOpt = Annotated[
    Optional[int], typer.Option("--n", min=1, max=32, help="Candidate drafts per image; default: 5 (config).")
]
DrafterOpt = Annotated[
    Optional[str], typer.Option(help="Drafter backend: lite | transformers | vllm; default: lite (config).")
]


@app.command()
def caption(
    images: ImagesArg,
    style: StyleOpt = None,
    locale: LocaleOpt = None,
    sku: Annotated[Optional[str], typer.Option(help="Product sku (applies to every image).")] = None,
    brand: Annotated[Optional[str], typer.Option(help="Brand hint.")] = None,
    category: Annotated[Optional[str], typer.Option(help="Category hint.")] = None,
    catalog: CatalogOpt = None,
    n: CandidatesOpt = None,
    refiner: RefinerOpt = None,
    model: ModelOpt = None,
    base_url: BaseUrlOpt = None,
    drafter: DrafterOpt = None,
    vlm: VlmOpt = None,
    vlm_url: VlmUrlOpt = None,
    fail_on_review: FailOnReviewOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Caption IMAGE files and print one JSON CaptionResult per line.

    Exit codes: 0 done, 1 some images failed (their records say why), 2 bad options (nothing ran), 3 some held
    for review (with --fail-on-review). A summary goes to stderr."""
    from caption_agent.schemas import CaptionRequest, ProductHint
    from caption_agent.usage import Tally, check_files, check_locale, check_style, load_checked

    try:  # everything that can be wrong with the command line, before any model loads
        check_files(
            images,
            "image",
            folder_hint="caption takes image files; for a folder run "
            "`caption-agent batch caption FOLDER --out results.jsonl`.",
        )
        cfg = load_checked(
            config, catalog=catalog, refiner=refiner, model=model, base_url=base_url, vlm=vlm, vlm_url=vlm_url,
            drafter=drafter,
        )  # fmt: skip
        style = check_style(style or cfg.default_style, cfg.prompts_dir)
        locale = check_locale(locale or cfg.default_locale)
        hint = ProductHint(sku=sku, brand=brand, category=category)
        requests = [CaptionRequest(image=p, style=style, locale=locale, hint=hint, n_candidates=n) for p in images]
    except (CaptionAgentError, ValidationError) as exc:
        _fail(exc)
    from caption_agent.pipeline import CaptionAgent

    try:
        results = CaptionAgent(cfg).caption_batch(requests)
    except CaptionAgentError as exc:  # a backend that cannot load (missing extra, bad model path)
        _fail(exc)
    tally = Tally()
    for path, result in zip(images, results):
        tally.add_result(result, str(path))
        sys.stdout.write(result.model_dump_json(exclude_none=True) + "\n")
        sys.stdout.flush()
    code = tally.print(fail_on_review=fail_on_review)
    if code:
        raise typer.Exit(code)


@app.command()
def styles(
    prompts_dir: Annotated[Optional[Path], typer.Option(help="User folder of presets.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List the style presets."""
    from caption_agent.prompts import list_styles

    try:
        found = list_styles(prompts_dir)
    except CaptionAgentError as exc:
        _fail(exc)
    if as_json:
        typer.echo(json.dumps({k: v.model_dump() for k, v in found.items()}, indent=2))
        return
    for name, preset in found.items():
        typer.echo(f"{name:20s} ≤{preset.max_chars:<5d} {preset.description}")


# --- Sub-commands owned by other modules: one registration line each. ---
app.command("ingest")(ingest)
app.add_typer(policy_app, name="policy")
app.add_typer(review_app, name="review")
app.add_typer(eval_app, name="eval")
app.command("eval-policies", hidden=True)(eval_policies)  # older spelling
app.add_typer(batch_app, name="batch")
app.command("serve")(serve)
app.add_typer(models_app, name="models")
app.add_typer(cache_app, name="cache")
