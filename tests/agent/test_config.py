import pytest

from caption_agent.config import AgentConfig, load_for_cli
from caption_agent.errors import ConfigError
from caption_agent.jobs.engine import config_fingerprint


def test_env_and_toml_layering(tmp_path, monkeypatch):
    toml = tmp_path / "c.toml"
    toml.write_text(
        '[refiner]\nbackend = "vllm"\n[refiner.vllm]\nbase_url = "http://127.0.0.1:9/v1"\n'
        "timeout_s = 5\n[drafter]\nn_candidates = 3\n"
    )
    monkeypatch.setenv("CAPTION_AGENT_DRAFTER__N_CANDIDATES", "7")
    monkeypatch.setenv("CAPTION_AGENT_REFINER__VLLM__MODEL", "served-name")
    cfg = AgentConfig.load(toml)
    assert cfg.refiner.backend == "vllm" and cfg.drafter.n_candidates == 7  # env beats file
    assert cfg.refiner.vllm.base_url == "http://127.0.0.1:9/v1" and cfg.refiner.vllm.timeout_s == 5  # merged
    assert cfg.refiner.vllm.model == "served-name"
    assert AgentConfig.load(toml, drafter={"n_candidates": 2}).drafter.n_candidates == 2


def test_misspelt_key_is_refused(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text("[refiner]\nbackedn = 'vllm'\n")
    with pytest.raises(ConfigError, match="backedn"):
        AgentConfig.load(toml)
    with pytest.raises(ConfigError, match="does not exist"):
        AgentConfig.load(tmp_path / "missing.toml")


@pytest.mark.parametrize(
    "section, key, new",
    [
        ("refiner", "base_url", "refiner.vllm.base_url (environment: CAPTION_AGENT_REFINER__VLLM__BASE_URL)"),
        ("refiner", "temperature", "refiner.local.temperature or refiner.vllm.temperature"),
        ("drafter", "model", "drafter.transformers.model or drafter.vllm.model"),
        ("drafter", "ocr", "drafter.lite.ocr"),
        ("drafter", "max_concurrency", "drafter.vllm.max_concurrency"),
    ],
)
def test_old_flat_keys_are_refused_naming_the_new_one(section, key, new, monkeypatch):
    with pytest.raises(ConfigError) as err:
        AgentConfig.load(**{section: {key: 1}})
    assert new in str(err.value) and "Fix:" in str(err.value)
    monkeypatch.setenv(f"CAPTION_AGENT_{section.upper()}__{key.upper()}", "1")  # the old environment name too
    with pytest.raises(ConfigError, match="moved into the backend's own section"):
        AgentConfig.load()


def test_a_setting_of_another_backend_is_refused_not_ignored():
    with pytest.raises(ConfigError, match=r"drafter\.vllm\.device: Extra inputs are not permitted"):
        AgentConfig.load(drafter={"vllm": {"device": "cuda"}})
    with pytest.raises(ConfigError, match=r"refiner\.local\.base_url"):
        AgentConfig.load(refiner={"local": {"base_url": "http://x"}})


def test_server_settings_are_one_model_for_every_server_backend():
    from caption_agent.config import ServerSettings, VLLMDrafterSettings, VLLMRefinerSettings

    assert issubclass(VLLMDrafterSettings, ServerSettings) and issubclass(VLLMRefinerSettings, ServerSettings)
    assert set(ServerSettings.model_fields) <= set(VLLMDrafterSettings.model_fields)


def test_cli_flags_go_through_one_validated_path(tmp_path):
    cfg = load_for_cli(None, refiner="vllm", base_url="http://h:1/v1", model="m", catalog=tmp_path, drafter="lite")
    assert (cfg.refiner.backend, cfg.refiner.vllm.base_url, cfg.refiner.vllm.model) == ("vllm", "http://h:1/v1", "m")
    assert cfg.retrieval.catalog_dir == tmp_path and cfg.drafter.backend == "lite"
    assert load_for_cli(None, refiner="local", model="/models/x").refiner.local.model == "/models/x"
    local = tmp_path / "local.toml"
    local.write_text('[refiner]\nbackend = "local"\n')
    assert load_for_cli(local, model="/models/y").refiner.local.model == "/models/y"  # the configured refiner's
    with pytest.raises(ConfigError, match="but the refiner is 'template'"):  # the default writes no model text
        load_for_cli(None, model="/models/x")
    with pytest.raises(ConfigError, match="--base-url is a setting of the vllm refiner"):
        load_for_cli(None, base_url="http://h:1/v1")
    with pytest.raises(ConfigError, match="n_candidates"):
        toml = tmp_path / "bad.toml"
        toml.write_text("[drafter]\nn_candidates = 0\n")
        load_for_cli(toml, refiner="none")


def test_fingerprint_covers_the_backends_in_use_only():
    base = AgentConfig.load(refiner={"backend": "vllm", "vllm": {"model": "a", "base_url": "http://x/v1"}})
    other_backend = base.model_copy(deep=True)
    other_backend.drafter.vllm.model = "an unused drafter"
    runtime = base.model_copy(deep=True)
    runtime.refiner.vllm.timeout_s, runtime.refiner.vllm.base_url = 5, "http://y/v1"
    output = base.model_copy(deep=True)
    output.refiner.vllm.model = "b"
    fp = config_fingerprint(base)
    assert config_fingerprint(other_backend) == fp and config_fingerprint(runtime) == fp
    assert config_fingerprint(output) != fp


def test_an_edited_policy_file_is_other_settings(tmp_path):
    policy = tmp_path / "policy.yaml"
    policy.write_text('version: "1"\nextends: default\n')
    cfg = AgentConfig.load(policy={"file": policy})
    before = config_fingerprint(cfg)
    policy.write_text('version: "1"\nextends: default\nrules:\n  blocklist: {terms+: [teacup]}\n')
    assert config_fingerprint(cfg) != before  # same path, other content
