"""The `caption-agent` command line (Typer). Commands are thin wrappers over library calls."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from pydantic import ValidationError

from caption_agent.cli.cache import cache_app
from caption_agent.cli.catalog import ingest
from caption_agent.cli.models import models_app
from caption_agent.cli.policy import eval_policies, eval_review, policy_app, review_app
from caption_agent.errors import CaptionAgentError, describe
from caption_agent.eval.cli import eval_captions
from caption_agent.jobs.cli import batch_app
from caption_agent.service.cli import serve

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Write publishable image captions: draft, rank, ground, refine, moderate.",
)

ConfigOpt = Annotated[Optional[Path], typer.Option("--config", "-c", help="TOML config file.")]


def _fail(exc: Exception) -> None:
    typer.secho(f"error: {describe(exc)}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


@app.command()
def caption(
    images: Annotated[list[Path], typer.Argument(help="Image files to caption.")],
    style: Annotated[Optional[str], typer.Option("--style", "-s", help="Style preset.")] = None,
    locale: Annotated[Optional[str], typer.Option("--locale", "-l", help="BCP-47 output locale.")] = None,
    sku: Annotated[Optional[str], typer.Option(help="Product sku (applies to every image).")] = None,
    brand: Annotated[Optional[str], typer.Option(help="Brand hint.")] = None,
    category: Annotated[Optional[str], typer.Option(help="Category hint.")] = None,
    catalog: Annotated[Optional[Path], typer.Option(help="Embedded Chroma folder made by `ingest`.")] = None,
    n: Annotated[Optional[int], typer.Option("--n", help="Candidate drafts per image.")] = None,
    refiner: Annotated[Optional[str], typer.Option(help="Refiner: local | vllm | template | none.")] = None,
    drafter: Annotated[Optional[str], typer.Option(help="Drafter backend: lite | transformers | vllm.")] = None,
    config: ConfigOpt = None,
) -> None:
    """Caption IMAGES and print one JSON CaptionResult per line."""
    from caption_agent.config import load_for_cli
    from caption_agent.pipeline import CaptionAgent
    from caption_agent.schemas import CaptionRequest, ProductHint

    try:
        cfg = load_for_cli(config, refiner=refiner, drafter=drafter, catalog=catalog)
        agent = CaptionAgent(cfg)
        hint = ProductHint(sku=sku, brand=brand, category=category)
        requests = [
            CaptionRequest(
                image=p,
                style=style or cfg.default_style,
                locale=locale or cfg.default_locale,
                hint=hint,
                n_candidates=n,
            )
            for p in images
        ]
    except (CaptionAgentError, ValidationError) as exc:
        _fail(exc)
    failed = 0
    try:
        results = agent.caption_batch(requests)
    except CaptionAgentError as exc:  # a backend that cannot load (missing extra, bad model path)
        _fail(exc)
    for result in results:
        failed += result.status == "error"
        sys.stdout.write(result.model_dump_json(exclude_none=True) + "\n")
        sys.stdout.flush()
    if failed:
        typer.secho(
            f"{failed} of {len(requests)} images failed; see their error records.", err=True, fg=typer.colors.YELLOW
        )
        raise typer.Exit(1)


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
eval_app = typer.Typer(no_args_is_help=True, help="Evaluate captions and policies.")
eval_app.command("policies")(eval_policies)
eval_app.command("captions")(eval_captions)
eval_app.command("review")(eval_review)
app.add_typer(eval_app, name="eval")
app.command("eval-policies", hidden=True)(eval_policies)  # older spelling
app.add_typer(batch_app, name="batch")
app.command("serve")(serve)
app.add_typer(models_app, name="models")
app.add_typer(cache_app, name="cache")
