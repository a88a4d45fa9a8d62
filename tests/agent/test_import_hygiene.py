import subprocess
import sys

CODE = """
import sys, threading
import agent, prompts, retrieval, policies
from agent import CaptionAgent, AgentConfig, CaptionRequest
import agent.cli
heavy = [m for m in ("torch", "transformers", "chromadb", "sentence_transformers", "langchain_openai",
                     "onnxruntime", "nudenet", "vllm", "ray") if m in sys.modules]
assert not heavy, heavy
assert threading.active_count() == 1, threading.enumerate()
print("clean")
"""


def test_import_loads_nothing_heavy():
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "clean"
