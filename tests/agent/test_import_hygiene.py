import os
import subprocess
import sys

import pytest

CODE = """
import sys, threading
import caption_agent, caption_agent.prompts, caption_agent.retrieval, caption_agent.policies
from caption_agent import CaptionAgent, AgentConfig, CaptionRequest
import caption_agent.cli
heavy = [m for m in ("torch", "transformers", "chromadb", "sentence_transformers", "langchain_openai",
                     "onnxruntime", "nudenet", "vllm", "ray") if m in sys.modules]
assert not heavy, heavy
assert threading.active_count() == 1, threading.enumerate()
print("clean")
"""


def test_import_loads_nothing_heavy(tmp_path):
    out = subprocess.run([sys.executable, "-P", "-c", CODE], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "clean"


@pytest.mark.slow
def test_the_default_caption_path_imports_no_torch(images_dir):
    """`caption-agent caption` on the defaults (lite drafter, image screening, ONNX embedder, template refiner)
    once its model cache is built: every import is recorded (-X importtime) and none is torch's."""
    pytest.importorskip("nudenet")
    image = str(images_dir / "grace_hopper.jpg")  # a face: MTCNN runs all three networks
    from caption_agent import caption

    assert caption(image).status != "error"  # builds the cache entries (exports run under torch, here)
    cmd = [sys.executable, "-P", "-X", "importtime", "-m", "caption_agent.cli", "caption", image]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=os.environ)
    assert out.returncode == 0, out.stderr[-2000:]
    imported = {line.split("|")[-1].strip() for line in out.stderr.splitlines() if line.startswith("import time:")}
    assert {"caption_agent.drafters.lite_model", "caption_agent.faces", "onnxruntime"} <= imported  # models ran
    heavy = sorted(m for m in imported if m.split(".")[0] in ("torch", "transformers", "sentence_transformers"))
    assert not heavy, heavy[:10]
