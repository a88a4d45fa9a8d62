"""Configuration inputs fail with one clear line: a deeply nested TOML file, a malformed JSON environment value,
and YAML alias bombs in policies, presets and model families (bounded before anything is built)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from caption_agent.config import AgentConfig
from caption_agent.errors import ConfigError, PolicyError
from caption_agent.yaml_files import MAX_YAML_ALIASES, load_yaml

PHOTO = Path(__file__).resolve().parents[2] / "examples" / "images" / "chelsea.jpg"
# Nine levels of ten aliases: 1 KB of text, 10^9 values once expanded.
BOMB = 'a: &a ["x","x","x","x","x","x","x","x","x","x"]\n' + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{','.join(['*' + chr(97 + i)] * 10)}]\n" for i in range(8)
)


def test_a_deeply_nested_toml_file_is_a_config_error(tmp_path):
    toml = tmp_path / "deep.toml"
    toml.write_text("x = " + "[" * 50_000 + "]" * 50_000 + "\n")
    with pytest.raises(ConfigError, match="nests tables or arrays deeper") as err:
        AgentConfig.load(toml)
    assert "Fix: flatten" in str(err.value)
    toml.write_text("[drafter\n")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        AgentConfig.load(toml)


def test_a_malformed_json_environment_value_names_the_variable(monkeypatch):
    monkeypatch.setenv("CAPTION_AGENT_DRAFTER", "{bad")
    with pytest.raises(ConfigError) as err:
        AgentConfig.load()
    message = str(err.value)
    assert "CAPTION_AGENT_DRAFTER" in message and "valid JSON" in message and "__BACKEND" in message


def test_the_cli_answers_a_bad_environment_value_with_one_line_and_exit_2():
    from caption_agent.cli import app

    result = CliRunner().invoke(app, ["caption", str(PHOTO)], env={"CAPTION_AGENT_DRAFTER": "{bad"})
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output and "CAPTION_AGENT_DRAFTER" in result.output


def test_a_yaml_alias_bomb_is_refused_quickly_everywhere_yaml_is_read(tmp_path):
    assert len(BOMB) < 1024
    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match="aliases"):
        load_yaml(BOMB, "bomb.yaml")
    assert time.perf_counter() - t0 < 1.0
    # A policy file (what `policy check` loads).
    from caption_agent.policies.schema import load_policy

    policy = tmp_path / "bomb.yaml"
    policy.write_text("version: 1\n" + BOMB)
    with pytest.raises(PolicyError, match="aliases") as err:
        load_policy(policy)
    assert "Fix:" in str(err.value)
    # A style preset in a user folder.
    from caption_agent.prompts import list_styles

    presets = tmp_path / "presets"
    presets.mkdir()
    (presets / "bomb.yaml").write_text("name: bomb\n" + BOMB)
    with pytest.raises(ConfigError, match="aliases"):
        list_styles(presets)


def test_few_aliases_pass_and_a_recursive_anchor_is_refused():
    data, _ = load_yaml("base: &b {x: 1}\none: *b\ntwo: *b\n", "ok.yaml")
    assert data == {"base": {"x": 1}, "one": {"x": 1}, "two": {"x": 1}}
    many = "a: &a 1\nl: [" + ",".join(["*a"] * (MAX_YAML_ALIASES + 1)) + "]\n"
    with pytest.raises(ConfigError, match="aliases"):
        load_yaml(many, "many.yaml")
    with pytest.raises(ConfigError, match="recursive"):
        load_yaml("a: &a [1, *a]\n", "loop.yaml")
    with pytest.raises(ConfigError, match="nests deeper"):
        load_yaml("x: " + "[" * 20_000 + "]" * 20_000, "deep.yaml")


def test_the_bundled_policy_still_loads():
    from caption_agent.policies.schema import default_policy_path, load_policy

    assert load_policy(default_policy_path()).version
