#!/usr/bin/env bash
# The torchvision test venv (.venv-vision): the VLM presets whose processors need torchvision (Qwen2.5-VL,
# Qwen3-VL, LLaVA-OneVision, SmolVLM/SmolVLM2) are tested here on tiny random models. PyPI's torchvision is a CUDA
# build that breaks beside the main venv's CPU torch; torch 2.14.1 + torchvision 0.29.1 (CUDA builds) run on CPU
# (FACTS.md). ~5.5 GB, ~190 s from the local wheel cache. Idempotent: a venv that already imports both is kept.
#
#   scripts/vision_venv.sh            # create or reuse .venv-vision
#   scripts/vision_venv.sh test       # ... then run tests/drafters/test_presets_vision.py with it
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${CAPTION_AGENT_VISION_VENV:-.venv-vision}"
PY="$VENV/bin/python"
TRANSFORMERS="$(.venv/bin/python -c 'import transformers; print(transformers.__version__)' 2>/dev/null || echo 5.24.0)"

if [ -x "$PY" ] && "$PY" -c "import torchvision, transformers, num2words" 2>/dev/null; then
  echo "$VENV is ready"
else
  t0=$(date +%s)
  python3 -m venv --clear "$VENV"
  "$PY" -m pip install -q torch==2.14.1 torchvision==0.29.1
  # The project's core dependencies (pyproject), the transformers the main venv runs, and pytest; nothing heavy.
  deps=$("$PY" -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml","rb"))["project"]["dependencies"]))')
  # shellcheck disable=SC2086
  "$PY" -m pip install -q $(echo "$deps" | tr '\n' ' ') "transformers==$TRANSFORMERS" safetensors tokenizers num2words pytest pytest-asyncio
  "$PY" -c "import torch, torchvision, transformers; print('torch', torch.__version__, 'torchvision', torchvision.__version__, 'transformers', transformers.__version__)"
  echo "$VENV created in $(( $(date +%s) - t0 )) s"
fi
# The project itself, reinstalled every time (seconds) so the venv tests this tree: a regular install built in a
# throw-away folder, so the repo's build/ and egg-info stay as they are.
tmp=$(mktemp -d); printf '[build]\nbuild_base = %s\n[egg_info]\negg_base = %s\n' "$tmp" "$tmp" > "$tmp/setup.cfg"
DIST_EXTRA_CONFIG="$tmp/setup.cfg" "$PY" -m pip install -q --no-deps --no-build-isolation --force-reinstall . ; rm -rf "$tmp"

if [ "${1:-}" = "test" ]; then
  shift
  HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 "$PY" -P -m pytest -q -p no:cacheprovider tests/drafters/test_presets_vision.py "$@"
fi
