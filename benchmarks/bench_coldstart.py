"""Cold start: `caption-agent caption ONE.jpg` on the default config, as a ratio to `python -c "import torch"`.

    python benchmarks/bench_coldstart.py [--quick] [--repeats 3] [--image examples/images/coffee.jpg] [--out r.json]

One setup run first fills the model cache (ONNX embedder export, SmolLM2 safetensors), as a user's first run does;
then the CLI and the bare torch import alternate ``--repeats`` times in fresh processes with the same environment
(same thread settings), and medians are compared. A separate in-process run gives the breakdown: imports, each
stage's construction, and the pipeline's own stage timings for the one image.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

ROOT = Path(__file__).resolve().parents[1]
CLI = Path(sys.executable).with_name("caption-agent")

_BREAKDOWN = """
import json, sys, time
t0 = time.perf_counter()
marks = {}
from caption_agent.config import AgentConfig
from caption_agent.pipeline import CaptionAgent
marks["import caption_agent"] = time.perf_counter() - t0
agent = CaptionAgent(AgentConfig.load())
for stage in ("policy", "drafter", "embedder", "refiner"):
    t = time.perf_counter()
    getattr(agent, stage)
    marks["load " + stage] = time.perf_counter() - t
t = time.perf_counter()
result = agent.caption(sys.argv[1])
marks["caption (all stages)"] = time.perf_counter() - t
marks["total in process"] = time.perf_counter() - t0
heavy = [m for m in ("torch", "transformers", "sentence_transformers", "onnxruntime", "gguf") if m in sys.modules]
print(json.dumps({"marks_s": {k: round(v, 3) for k, v in marks.items()}, "stage_ms": result.provenance.timings_ms,
                  "status": result.status, "embedder": result.provenance.embedder, "modules": heavy}))
"""


def _wall(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {proc.stderr.strip().splitlines()[-3:]}")
    return seconds


def run(image: Path, repeats: int) -> dict[str, Any]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "ANONYMIZED_TELEMETRY": "False"}
    cli = [str(CLI), "caption", str(image)]
    torch_cmd = [sys.executable, "-c", "import torch"]
    setup_s = _wall(cli, env)  # fills the model cache (a no-op when it is already warm)
    cli_s: list[float] = []
    torch_s: list[float] = []
    for i in range(repeats):
        for name in ("cli", "torch") if i % 2 == 0 else ("torch", "cli"):
            (cli_s if name == "cli" else torch_s).append(_wall(cli if name == "cli" else torch_cmd, env))
    proc = subprocess.run(
        [sys.executable, "-c", _BREAKDOWN, str(image)], capture_output=True, text=True, env=env, cwd=ROOT, timeout=600
    )
    if proc.returncode != 0:
        raise RuntimeError(f"breakdown run failed: {proc.stderr.strip().splitlines()[-3:]}")
    breakdown = json.loads(proc.stdout.strip().splitlines()[-1])
    cli_p50, torch_p50 = statistics.median(cli_s), statistics.median(torch_s)
    return {
        "image": image.name,
        "repeats": repeats,
        "setup_run_s": round(setup_s, 2),
        "cli_s": [round(s, 2) for s in cli_s],
        "import_torch_s": [round(s, 2) for s in torch_s],
        "cli_p50_s": round(cli_p50, 2),
        "import_torch_p50_s": round(torch_p50, 2),
        "cli_vs_import_torch": round(cli_p50 / torch_p50, 2),
        "target_s": 3.0,
        "breakdown": breakdown,
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "load_avg_1m_end": round(os.getloadavg()[0], 2),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="One repeat.")
    parser.add_argument("--repeats", type=int, default=None, help="Alternating CLI / import-torch runs (3; 1 quick).")
    parser.add_argument("--image", type=Path, default=ROOT / "examples" / "images" / "coffee.jpg")
    parser.add_argument("--out", type=Path, default=None, help="Write the results as JSON here.")
    args = parser.parse_args(argv)
    res = run(args.image, args.repeats or (1 if args.quick else 3))
    print(json.dumps(res, indent=1))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
