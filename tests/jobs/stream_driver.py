"""A streaming Ray job driver as its own process (the kill test SIGKILLs it): zero-cost or CPU-bound steps.

usage: stream_driver.py MANIFEST OUT ADDRESS STEP [ROUNDS]   (STEP: noop | burn)
Prints the job summary as JSON on stdout.
"""

from __future__ import annotations

import sys

from caption_agent.jobs.engine import JobOptions, run_job
from caption_agent.jobs.ray_sources import RaySource, StepSpec
from caption_agent.jobs.stages import StageSpec

STEPS = {
    "noop": "caption_agent.jobs.pipeline_steps:NoopStep",
    "burn": "caption_agent.jobs.pipeline_steps:BurnStep",
    "probe": "caption_agent.jobs.pipeline_steps:ProbeStep",
}


def main(argv: list[str]) -> int:
    manifest, out, address, step = argv[:4]
    rounds = int(argv[4]) if len(argv) > 4 else 40
    source = RaySource(
        inputs=[manifest],
        style="alt_text",
        locale="en-US",
        limits={},
        steps=(StepSpec(STEPS[step], {"rounds": rounds}, "cpu"),),
    )
    options = JobOptions(
        out=out, runner="ray", ray_address=address or None, batch_size=8, flush_every=4, progress=False
    )
    spec = StageSpec(stage="unused:Unused", item="caption_agent.jobs.manifest:CaptionItem")
    summary = run_job("caption", iter(()), None, spec, options, fingerprint="stream-test", source=source)
    sys.stdout.write(summary.model_dump_json() + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
