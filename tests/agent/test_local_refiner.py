import pytest

from caption_agent.prompts import load_preset
from caption_agent.refiners import REFINERS, RefineJob
from caption_agent.refiners.local import LocalRefiner

pytestmark = pytest.mark.slow


def test_registry_resolves_local():
    assert REFINERS.get("local") is LocalRefiner


def test_real_smollm2_refines_within_budget(local_refiner):
    job = RefineJob(preset=load_preset("alt_text"), draft="A tabby cat in brown and grey tones.", max_chars=80)
    out = local_refiner.refine(job)
    assert 3 <= len(out.caption) <= 80
    assert "SmolLM2" in local_refiner.model_id
    raw = local_refiner.complete(job.prompt().messages, job)
    assert raw.startswith('{"caption": ')  # the prefill keeps even a 135M model in the JSON shape
