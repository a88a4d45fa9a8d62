"""Build the ONNX files the default path runs into the model cache: EfficientNet-Lite0 (lite drafter), MTCNN's three
networks (face screening) and all-MiniLM-L6-v2 (ranking, retrieval). NudeNet ships its own ONNX file.

    python scripts/onnx_exports.py           # export what is missing (needs torch: the `lite` extra)
    python scripts/onnx_exports.py --check   # exit 0 when every file is there, 1 (naming what is missing) if not

Each export is the one the runtime would make on first use (the same cache entry, lock, stamp and check against
torch), so this only moves that first use to setup time. The default venv (`make setup`) has no torch:
scripts/bootstrap.sh runs this file under a throw-away venv that has torch and sees the default venv's packages,
then deletes it. ``--check`` never exports: torch is made unimportable for it.
"""

from __future__ import annotations

import argparse
import sys
import time


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--check",
        action="store_true",
        help="Export nothing: exit 0 when every file is there, else 1 (naming what is missing).",
    )
    check = parser.parse_args(argv).check
    if check:
        sys.modules["torch"] = None  # type: ignore[assignment]  # import torch now fails: a missing file is reported
    from caption_agent.drafters.lite_model import onnx_entry as lite0_entry
    from caption_agent.embedders import OnnxEmbedder
    from caption_agent.errors import CaptionAgentError
    from caption_agent.faces import onnx_entry as mtcnn_entry

    missing = []
    for name, build in (
        ("efficientnet-lite0", lite0_entry),
        ("mtcnn", mtcnn_entry),
        ("all-MiniLM-L6-v2", lambda: OnnxEmbedder()),
    ):
        t0 = time.perf_counter()
        try:
            build()
        except CaptionAgentError as exc:
            missing.append(name)
            print(f"{name}: {'missing' if check else 'failed'} ({exc})", file=sys.stderr)
            continue
        print(f"{name}: ready ({time.perf_counter() - t0:.1f} s)")
    return 1 if missing else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
