import subprocess
import sys

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
