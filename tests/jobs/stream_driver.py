"""A streaming Ray job driver as its own process (the kill test SIGKILLs it): zero-cost or CPU-bound steps.

usage: stream_driver.py INPUT OUT ADDRESS STEP [ARG] [--batch N] [--key-actors N] [--limit N]
STEP: noop | probe | burn (ARG: SHA-256 rounds per item) | count (ARG: a file that gets one line per computed row).
Prints the job summary as JSON on stdout. Ray workers find ``CountStep`` here: Ray puts the driver script's folder
on their import path.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Sequence

from caption_agent.jobs.engine import JobOptions, run_job
from caption_agent.jobs.ray_sources import RaySource, StepSpec
from caption_agent.jobs.stages import StageSpec

STEPS = {
    "noop": "caption_agent.jobs.pipeline_steps:NoopStep",
    "burn": "caption_agent.jobs.pipeline_steps:BurnStep",
    "probe": "caption_agent.jobs.pipeline_steps:ProbeStep",
    "count": "stream_driver:CountStep",
}
FAIL_CHARS = 99  # CountStep answers rows asking for this max_chars with an error record


class CountStep:
    """Appends each computed row's key to ``path`` (one write per batch: appends of whole lines do not
    interleave), then answers with an ``ok`` record whose text names the computation (its cache key)."""

    def __init__(self, path: str, **_: Any) -> None:
        self.path = path

    def __call__(self, pairs: Sequence[tuple[Any, Any]]) -> list[dict[str, Any]]:
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write("".join(f"{item.key}\n" for item, _ in pairs))
        out = []
        for item, _ in pairs:
            if item.max_chars == FAIL_CHARS:
                error = {"type": "StepFailed", "message": item.cache_key, "stage": "draft"}
                out.append(item.annotate({"key": item.key, "status": "error", "error": error}))
            else:
                out.append(item.annotate({"key": item.key, "status": "ok", "text": item.cache_key}))
        return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("input")
    parser.add_argument("out")
    parser.add_argument("address")
    parser.add_argument("step", choices=sorted(STEPS))
    parser.add_argument("arg", nargs="?", default="40")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--key-actors", type=int, default=1)
    parser.add_argument("--limit", type=int, default=None)
    args = parser.parse_args(argv)
    kwargs = {"path": args.arg} if args.step == "count" else {"rounds": int(args.arg)}
    source = RaySource(
        inputs=[args.input],
        style="alt_text",
        locale="en-US",
        limits={},
        limit=args.limit,
        steps=(StepSpec(STEPS[args.step], kwargs, "cpu"),),
    )
    options = JobOptions(
        out=args.out,
        runner="ray",
        ray_address=args.address or None,
        batch_size=args.batch,
        ray_key_actors=args.key_actors,
        flush_every=4,
        progress=False,
    )
    spec = StageSpec(stage="unused:Unused", item="caption_agent.jobs.manifest:CaptionItem")
    summary = run_job("caption", iter(()), None, spec, options, fingerprint="stream-test", source=source)
    sys.stdout.write(summary.model_dump_json() + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
