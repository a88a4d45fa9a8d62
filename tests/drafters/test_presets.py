"""The VLM preset registry: data files, `caption-agent models`, name resolution, offline errors and the fallback."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from caption_agent.cli import app
from caption_agent.config import DrafterSettings, TransformersDrafterSettings, VLLMDrafterSettings
from caption_agent.drafters.base import Drafter
from caption_agent.drafters.presets import estimate_memory_gb, fetch, find_preset, get_preset, load_presets
from caption_agent.drafters.routing import build_drafter
from caption_agent.errors import BackendUnavailableError, ConfigError, UnsupportedModelError
from caption_agent.prompts import list_styles

FAMILIES = {
    "florence-2", "blip", "blip-2", "git", "idefics3", "smolvlm2", "qwen2.5-vl", "qwen3-vl", "llava-onevision",
    "paligemma-2",
}  # fmt: skip


def test_registry_holds_the_families_with_complete_presets():
    presets = load_presets()
    assert len(presets) >= 10 and {p.family for p in presets.values()} == FAMILIES
    styles = set(list_styles())
    for p in presets.values():
        assert p.hub_id.count("/") == 1 and p.licence and p.card.startswith("https://huggingface.co/")
        assert "default" in p.prompts and set(p.prompts) - {"default"} <= styles  # prompts are keyed by style preset
        assert not p.trust_remote_code  # native transformers classes only
        assert p.memory_gb == estimate_memory_gb(p.params_b, p.dtype)
        if p.vllm:
            assert p.vllm_command.startswith(f"vllm serve {p.hub_id} --served-model-name {p.name} ")
        else:
            assert p.vllm_command.startswith("vLLM: unsupported")
    assert get_preset("qwen2.5-vl-3b").processor == {"size": {"shortest_edge": 200704, "longest_edge": 1003520}}
    assert get_preset("paligemma2-3b-docci").gated and "Gemma" in get_preset("paligemma2-3b-docci").licence
    assert get_preset("florence-2-base").prompt_for("seo_product") == "<DETAILED_CAPTION>"
    assert get_preset("git-base-coco").prompt_for("alt_text") == ""  # unconditional: the default for every style


def test_names_resolve_hub_ids_and_folders_do_not(tmp_path):
    assert find_preset("florence-2-base").hub_id == "florence-community/Florence-2-base"
    assert find_preset("microsoft/git-base-coco") is None and find_preset("no-such-model") is None
    (tmp_path / "blip-base").mkdir()
    assert find_preset(str(tmp_path / "blip-base")) is None  # a path always wins
    with pytest.raises(ConfigError, match="unknown VLM preset 'nope'.*florence-2-base"):
        get_preset("nope")


def test_user_folder_adds_and_overrides_presets(tmp_path):
    (tmp_path / "mine.yaml").write_text(
        "family: mine\nmodel_type: blip\narchitecture: BlipForConditionalGeneration\nlicence: MIT\n"
        "prompts: {default: 'a photo of'}\npresets:\n"
        "  - {name: blip-base, hub_id: me/blip-finetuned, params_b: 0.25, dtype: float32}\n"
    )
    presets = load_presets(tmp_path)
    assert presets["blip-base"].hub_id == "me/blip-finetuned" and presets["blip-base"].memory_gb == 1.7
    assert presets["florence-2-base"].source == "florence2.yaml"
    (tmp_path / "bad.yaml").write_text("family: x\nmodel_type: blip\narchitecture: B\npresets: []\n")
    with pytest.raises(ConfigError, match="bad.yaml"):
        load_presets(str(tmp_path))


def test_cli_list_json_and_show():
    runner = CliRunner()
    listed = runner.invoke(app, ["models", "list"])
    assert listed.exit_code == 0 and "florence-2-base" in listed.output and "(gated)" in listed.output
    data = json.loads(runner.invoke(app, ["models", "list", "--json"]).output)
    assert len(data) >= 10 and {"name", "hub_id", "licence", "vllm_command", "memory_gb", "prompts"} <= set(data[0])
    shown = runner.invoke(app, ["models", "show", "qwen2.5-vl-3b"])
    assert shown.exit_code == 0 and "vllm serve Qwen/Qwen2.5-VL-3B-Instruct" in shown.output
    assert "1003520" in shown.output and "seo_product" in shown.output
    assert "vLLM: unsupported" in runner.invoke(app, ["models", "show", "git-base-coco"]).output
    one = json.loads(runner.invoke(app, ["models", "show", "blip-base", "--json"]).output)
    assert one["hub_id"] == "Salesforce/blip-image-captioning-base" and one["revision"] is None
    unknown = runner.invoke(app, ["models", "show", "nope"])
    assert unknown.exit_code == 2 and "models list" in unknown.output


def test_offline_error_names_the_preset_and_the_download_command(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    settings = TransformersDrafterSettings(model="smolvlm-256m", cache_dir=str(tmp_path))
    with pytest.raises(BackendUnavailableError) as info:
        from caption_agent.drafters.hf import TransformersDrafter

        TransformersDrafter(settings)
    message = str(info.value)
    assert "'smolvlm-256m'" in message and "HuggingFaceTB/SmolVLM-256M-Instruct" in message
    assert "HF_HUB_OFFLINE=1" in message and "caption-agent models download smolvlm-256m" in message


class _Lite(Drafter):
    name = "lite"

    def draft(self, images, infos, n, style=None):  # pragma: no cover - never called here
        return []


def test_fallback_to_lite_follows_the_setting_and_is_recorded(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    section = {"model": "florence-2-base", "cache_dir": str(tmp_path)}
    lite = _Lite(None)
    drafter, note = build_drafter(
        DrafterSettings(backend="transformers", transformers=section, fallback_to_lite=True), lite=lambda: lite
    )
    assert drafter is lite and "florence-2-base" in note and "used lite instead" in note
    assert "caption-agent models download florence-2-base" in note
    with pytest.raises(BackendUnavailableError) as info:
        build_drafter(DrafterSettings(backend="transformers", transformers=section, fallback_to_lite=False))
    assert "fallback_to_lite is false" in " ".join(getattr(info.value, "__notes__", []))


def test_first_use_downloads_with_the_hub_client(tmp_path, monkeypatch):
    """Online, the snapshot is fetched (huggingface_hub shows its progress bars); only the drafter's files."""
    import huggingface_hub

    calls = []
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda repo, **kw: calls.append((repo, kw)) or "/x/y")
    path = fetch(get_preset("blip-base"), str(tmp_path), offline=False)
    repo, kw = calls[0]
    assert str(path) == "/x/y" and repo == "Salesforce/blip-image-captioning-base"
    assert (
        kw["local_files_only"] is False and kw["cache_dir"] == str(tmp_path) and "*.safetensors" in kw["allow_patterns"]
    )
    assert "*.onnx" not in kw["allow_patterns"] and "*.py" not in kw["allow_patterns"]


def test_vllm_drafter_refuses_a_preset_vllm_cannot_serve():
    from caption_agent.drafters.vllm import VLLMDrafter

    with pytest.raises(UnsupportedModelError, match="florence-2-base.*vLLM: unsupported"):
        VLLMDrafter(VLLMDrafterSettings(base_url="http://127.0.0.1:9/v1", model="florence-2-base"), check=False)


def test_vllm_drafter_takes_the_preset_prompt_and_decoding(monkeypatch):
    from caption_agent.drafters.vllm import VLLMDrafter

    drafter = VLLMDrafter(
        VLLMDrafterSettings(base_url="http://127.0.0.1:9/v1", model="smolvlm-256m", prompt_style="alt_text"),
        check=False,
    )
    assert drafter.served_model == "smolvlm-256m" and drafter.prompt.startswith("Write alt text")
    assert drafter.settings.max_new_tokens == 64
    drafter.close()


def test_importing_presets_and_the_cli_loads_no_model_stack():
    code = (
        "import sys, caption_agent.drafters.presets as p, caption_agent.cli.models; p.load_presets(); "
        "bad = [m for m in ('torch', 'transformers', 'huggingface_hub') if m in sys.modules]; assert not bad, bad"
    )
    subprocess.run([sys.executable, "-P", "-c", code], check=True)
