import pytest

from caption_agent.config import AgentConfig
from caption_agent.errors import ConfigError


def test_env_and_toml_layering(tmp_path, monkeypatch):
    toml = tmp_path / "c.toml"
    toml.write_text('[refiner]\nbackend = "vllm"\nbase_url = "http://127.0.0.1:9/v1"\n[drafter]\nn_candidates = 3\n')
    monkeypatch.setenv("CAPTION_AGENT_DRAFTER__N_CANDIDATES", "7")
    cfg = AgentConfig.load(toml)
    assert cfg.refiner.backend == "vllm" and cfg.drafter.n_candidates == 7  # env beats file
    assert AgentConfig.load(toml, drafter={"n_candidates": 2}).drafter.n_candidates == 2


def test_misspelt_key_is_refused(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text("[refiner]\nbackedn = 'vllm'\n")
    with pytest.raises(ConfigError, match="backedn"):
        AgentConfig.load(toml)
    with pytest.raises(ConfigError, match="does not exist"):
        AgentConfig.load(tmp_path / "missing.toml")
