"""`caption-agent models list | show NAME | download NAME`: the captioning VLM presets (agent/drafters/presets.py)."""

from __future__ import annotations

import json
from typing import Annotated, Optional

import typer

from caption_agent.errors import CaptionAgentError, describe

models_app = typer.Typer(no_args_is_help=True, help="Captioning VLM presets: list, show, download.")


def _fail(exc: Exception) -> None:
    typer.secho(f"error: {describe(exc)}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


@models_app.command("list")
def list_models(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """List the VLM presets usable as drafter.transformers.model (or drafter.vllm.model)."""
    from caption_agent.drafters.presets import load_presets

    try:
        presets = load_presets()
    except CaptionAgentError as exc:
        _fail(exc)
    if as_json:
        typer.echo(json.dumps([p.summary() for p in presets.values()], indent=2))
        return
    typer.echo(f"{'name':22s} {'family':16s} {'params':>7s} {'mem GB':>6s}  {'vllm':4s}  {'licence':31s} hub id")
    for p in presets.values():
        flags = " (gated)" if p.gated else ""
        flags += " [torchvision]" if p.needs_torchvision else ""
        typer.echo(
            f"{p.name:22s} {p.family:16s} {p.params_b:6.2f}B {p.memory_gb:6.1f}  {'yes' if p.vllm else 'no':4s}  "
            f"{p.licence[:31]:31s} {p.hub_id}{flags}"
        )


@models_app.command("show")
def show_model(
    name: Annotated[str, typer.Argument(help="Preset name (see `caption-agent models list`).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Everything about one preset: prompts per style, processor limits, decoding, memory, vLLM, licence."""
    from caption_agent.drafters.presets import get_preset

    try:
        preset = get_preset(name)
    except CaptionAgentError as exc:
        _fail(exc)
    info = preset.summary()
    if as_json:
        typer.echo(json.dumps(info, indent=2))
        return
    rows = [
        ("hub id", preset.hub_id + (f" @ {preset.revision}" if preset.revision else " (main; revision not pinned)")),
        ("family", f"{preset.family} ({preset.architecture}, model_type {preset.model_type})"),
        ("parameters", f"{preset.params_b:.2f} B"),
        ("dtype / memory", f"{preset.dtype}, ~{preset.memory_gb:.1f} GB GPU memory (estimate)"),
        ("licence", preset.licence + ("; gated: accept the terms on the model page" if preset.gated else "")),
        ("model card", preset.card),
        ("decoding", json.dumps(preset.decoding.model_dump())),
        ("processor", json.dumps(preset.processor) if preset.processor else "(checkpoint defaults)"),
        ("torchvision", "needed (video processor)" if preset.needs_torchvision else "not needed"),
        ("vllm", preset.vllm_command),
        ("download", preset.download_command),
    ]
    for key, value in rows:
        typer.echo(f"{key:15s} {value}")
    typer.echo("prompts")
    for style, prompt in preset.prompts.items():
        typer.echo(f"  {style:18s} {prompt!r}")


@models_app.command("download")
def download_model(
    name: Annotated[str, typer.Argument(help="Preset name (see `caption-agent models list`).")],
    cache_dir: Annotated[Optional[str], typer.Option(help="Hugging Face cache folder (default: HF_HUB_CACHE).")] = None,
) -> None:
    """Download a preset's files into the Hugging Face cache (with progress bars), for offline use later."""
    from caption_agent.drafters.presets import fetch, get_preset

    try:
        path = fetch(get_preset(name), cache_dir, offline=False)
    except CaptionAgentError as exc:
        _fail(exc)
    typer.echo(str(path))
