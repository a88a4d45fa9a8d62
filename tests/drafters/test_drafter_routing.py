"""Choosing drafters per config and per request, and the recorded fallback to lite."""

from __future__ import annotations

import socket

import pytest

from caption_agent import AgentConfig, CaptionAgent
from caption_agent.config import DrafterSettings
from caption_agent.drafters.routing import DrafterRouter, build_drafter
from caption_agent.errors import BackendUnavailableError, ConfigError, UnsupportedModelError

pytestmark = pytest.mark.slow  # loads the bundled EfficientNet-Lite0 for the lite fallback


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_configured_vlm_loads_without_note(tiny_blip):
    drafter, note = build_drafter(DrafterSettings(backend="transformers", transformers={"model": str(tiny_blip)}))
    assert drafter.name == "transformers" and note is None


def test_missing_weights_fall_back_to_lite_with_a_note(tmp_path):
    drafter, note = build_drafter(
        DrafterSettings(backend="transformers", transformers={"model": str(tmp_path / "gone")}, fallback_to_lite=True)
    )
    assert drafter.name == "lite"
    assert note.startswith("drafter: transformers (") and str(tmp_path / "gone") in note and "lite" in note


def test_no_fallback_when_the_config_forbids_it(tiny_text_model):
    settings = DrafterSettings(
        backend="transformers", transformers={"model": str(tiny_text_model)}, fallback_to_lite=False
    )
    with pytest.raises(UnsupportedModelError) as info:
        build_drafter(settings)
    assert str(tiny_text_model) in str(info.value)
    assert any("fallback_to_lite is false" in n for n in getattr(info.value, "__notes__", []))


def test_server_down_falls_back_or_raises():
    url = f"http://127.0.0.1:{_free_port()}/v1"  # nothing listens there
    settings = DrafterSettings(
        backend="vllm", vllm={"base_url": url, "model": "some-vlm", "max_retries": 0, "timeout_s": 5}
    )
    with pytest.raises(BackendUnavailableError, match="unreachable") as info:  # the default: never a silent lite
        build_drafter(settings)
    assert any("fallback_to_lite is false (the default)" in n for n in getattr(info.value, "__notes__", []))
    drafter, note = build_drafter(settings.model_copy(update={"fallback_to_lite": True}))  # the user opted in
    assert drafter.name == "lite" and "unreachable" in note and url in note


def test_unknown_backend_is_a_config_error_not_a_fallback():
    with pytest.raises(ConfigError, match="unknown drafter backend"):
        build_drafter(DrafterSettings(backend="nope"))


def test_router_loads_each_drafter_once(tiny_blip):
    router = DrafterRouter(DrafterSettings(backend="transformers", transformers={"model": str(tiny_blip)}))
    first, _ = router.get()
    assert router.get("transformers")[0] is first and router.get("lite")[0].name == "lite"
    router.close()


@pytest.fixture(scope="module")
def vlm_agent(tiny_blip, color_clip, lite_drafter):
    agent = CaptionAgent(
        AgentConfig.load(
            drafter={
                "backend": "transformers",
                "n_candidates": 3,
                "transformers": {"model": str(tiny_blip), "max_new_tokens": 8},
            },
            ranker={"clip_model": str(color_clip)},
            refiner={"backend": "none"},
        )
    )
    agent.drafters.adopt("lite", lite_drafter)  # the session's loaded lite model
    yield agent
    agent.close()


def test_pipeline_drafts_per_request_drafter_and_keeps_the_ranked_list(vlm_agent, images_dir):
    image = sorted(images_dir.glob("*.jpg"))[0]
    results = vlm_agent.caption_batch(
        [
            vlm_agent.make_request(image),
            vlm_agent.make_request(image, drafter="lite"),
            vlm_agent.make_request(image, n_candidates=2),
        ]
    )
    assert [r.provenance.drafter for r in results] == ["transformers", "lite", "transformers"]
    assert [len(r.candidates) for r in results] == [3, 3, 2]
    for r in results:
        assert r.status != "error", r.error
        assert r.provenance.ranker.startswith("clip:") and "CLIP-S" in r.provenance.ranker
        scores = [c.rank_score for c in r.candidates]
        assert scores == sorted(scores, reverse=True) and r.confidence == pytest.approx(scores[0], abs=1e-4)
        assert all(any(e.startswith("clip_s=") for e in c.evidence) for c in r.candidates)
        assert r.provenance.fallbacks == [f for f in r.provenance.fallbacks if not f.startswith("drafter:")]
    assert all(c.logprob is not None for c in results[0].candidates)


def test_pipeline_records_the_fallback_in_every_item(tmp_path, lite_drafter, images_dir):
    config = AgentConfig.load(
        drafter={
            "backend": "vllm",
            "vllm": {
                "base_url": f"http://127.0.0.1:{_free_port()}",
                "model": "some-vlm",
                "max_retries": 0,
                "timeout_s": 5,
            },
            "fallback_to_lite": True,
        },
        refiner={"backend": "none"},
    )
    agent = CaptionAgent(config)
    agent.drafters.adopt("lite", lite_drafter)
    images = sorted(images_dir.glob("*.jpg"))[:2]
    results = agent.caption_batch(images)
    agent.close()
    for r in results:
        assert r.provenance.drafter == "lite" and r.status != "error"
        notes = [f for f in r.provenance.fallbacks if f.startswith("drafter:")]
        assert len(notes) == 1 and "vllm" in notes[0] and "unreachable" in notes[0]


def test_pipeline_without_fallback_fails_items_with_the_reason(tmp_path, images_dir):
    config = AgentConfig.load(
        drafter={
            "backend": "transformers",
            "transformers": {"model": str(tmp_path / "gone")},
        },  # fallback_to_lite is off by default: the item fails with the load error
        refiner={"backend": "none"},
    )
    agent = CaptionAgent(config)
    result = agent.caption_batch(sorted(images_dir.glob("*.jpg"))[:1])[0]
    agent.close()
    assert result.status == "error" and result.error.stage == "draft"
    assert str(tmp_path / "gone") in result.error.message
