"""Cold start: the bundled SmolLM2 loads from its converted safetensors copy, not by de-quantising the GGUF."""

from __future__ import annotations

import pytest

from caption_agent.model_cache import cache_dir, read_stamp
from caption_agent.refiners.bundled import cached_smollm2_hf

pytestmark = pytest.mark.slow


def test_local_refiner_loads_the_cached_float32_copy(local_refiner):
    entry = cached_smollm2_hf()
    assert entry.is_relative_to(cache_dir()) and (entry / "model.safetensors").is_file()
    stamp = read_stamp(entry)
    assert stamp is not None and stamp["dtype"] == "float32"
    before = (entry / "model.safetensors").stat().st_mtime_ns
    assert cached_smollm2_hf() == entry  # a second call reuses it
    assert (entry / "model.safetensors").stat().st_mtime_ns == before
    assert str(local_refiner.model.name_or_path) == str(entry)
    assert str(local_refiner.model.dtype) == "torch.float32"
    assert "SmolLM2" in local_refiner.model_id
