"""Issue #29's surprises, each on the real parts: a refiner server that is down passes its items to the next link
of the chain at once; the Runnable takes a plain path; a sku against an empty catalog says the catalog is empty;
/v1/localize with a sku uses the service's catalog; PTBTokenizer's chatter stays out of `eval captions`."""

from __future__ import annotations

import logging
import socket
import time
from pathlib import Path

import pytest

from caption_agent.config import RefinerSettings, VLLMRefinerSettings
from caption_agent.errors import UnknownSkuError
from caption_agent.refiners.chain import LinkUnavailableError, build_chain
from caption_agent.refiners.vllm import RefinerUnavailableError, VLLMRefiner

ROOT = Path(__file__).resolve().parents[2]
COFFEE = ROOT / "examples" / "images" / "coffee.jpg"


def closed_url() -> str:
    """The URL of a loopback port nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}/v1"


def test_a_down_server_fails_fast_with_the_whole_start_sequence():
    from caption_agent.prompts import load_preset
    from caption_agent.refiners import RefineJob

    refiner = VLLMRefiner(VLLMRefinerSettings(base_url=closed_url(), model="m", max_retries=3))
    job = RefineJob(preset=load_preset("alt_text"), draft="a black cup", locale="en-US", facts=[])
    t0 = time.monotonic()
    out = refiner.refine_many([job, job])
    again = refiner.refine_many([job])  # within the recheck window: no second probe
    assert time.monotonic() - t0 < 3.0  # the client's retries (0.5 + 1 + 2 s of backoff) never ran
    assert all(isinstance(o, RefinerUnavailableError) and o.retryable for o in [*out, *again])
    message = str(out[0])
    for step in ("make vllm-up", "vllm_server.py setup", "vllm_server.py convert", "vllm_server.py start"):
        assert step in message, message
    assert refiner.stats["requests"] == 0  # nothing was sent


def test_the_chain_passes_a_down_link_over_and_can_be_told_not_to(caplog):
    from caption_agent.prompts import load_preset
    from caption_agent.refiners import RefineJob

    job = RefineJob(preset=load_preset("alt_text"), draft="a black cup", locale="en-US", facts=[])
    settings = RefinerSettings(backend="vllm", vllm={"base_url": closed_url(), "model": "m"})
    chain = build_chain(settings)
    assert chain.name == "vllm->template->draft" and chain.links[0].name == "vllm"
    with caplog.at_level(logging.WARNING, logger="caption_agent"):
        out = chain.links[0].refine_many([job])
    assert isinstance(out[0], LinkUnavailableError) and "passed to the next link" in str(out[0])
    assert "make vllm-up" in caplog.text
    strict = build_chain(settings.model_copy(update={"on_unavailable": "error"}))
    assert isinstance(strict.links[0].refine_many([job])[0], RefinerUnavailableError)
    chain.close()
    strict.close()


@pytest.fixture(scope="module")
def template_agent(catalog_dir, lite_drafter, embedder):
    from caption_agent import AgentConfig, CaptionAgent

    agent = CaptionAgent(
        AgentConfig.load(retrieval={"catalog_dir": catalog_dir}, refiner={"backend": "template"}),
        drafter=lite_drafter,
        embedder=embedder,
    )
    yield agent
    agent.close()


@pytest.mark.slow
def test_captions_go_on_with_the_template_while_the_llm_server_is_down(catalog_dir, lite_drafter, embedder):
    from caption_agent import AgentConfig, CaptionAgent

    config = AgentConfig.load(
        retrieval={"catalog_dir": catalog_dir}, refiner={"backend": "vllm", "vllm": {"base_url": closed_url()}}
    )
    agent = CaptionAgent(config, drafter=lite_drafter, embedder=embedder)
    try:
        result = agent.caption(COFFEE, style="seo_product", sku="MUG-001")
    finally:
        agent.close()
    assert result.status != "error", result.error
    assert result.provenance.refined_by == "template"
    assert any("vllm unavailable" in f for f in result.provenance.fallbacks), result.provenance.fallbacks
    assert result.provenance.timings_ms["refine"] < 5000  # not 11 s of retries


@pytest.mark.slow
def test_the_runnable_takes_a_plain_path_like_the_cli(template_agent):
    chain = template_agent.as_runnable()
    by_path = chain.invoke(str(COFFEE))
    by_dict = chain.batch([{"image": COFFEE}])[0]
    assert by_path.status != "error" and by_path.style == template_agent.config.default_style
    assert by_path.text == by_dict.text


@pytest.mark.slow
def test_a_sku_against_an_empty_catalog_says_the_catalog_is_empty(tmp_path, lite_drafter, embedder):
    from caption_agent import AgentConfig, CaptionAgent
    from caption_agent.config import RetrievalSettings
    from caption_agent.retrieval import CatalogStore

    with CatalogStore.open(RetrievalSettings(catalog_dir=tmp_path / "empty"), embedder, writer=True):
        pass
    agent = CaptionAgent(
        AgentConfig.load(retrieval={"catalog_dir": tmp_path / "empty"}, refiner={"backend": "template"}),
        drafter=lite_drafter,
        embedder=embedder,
    )
    try:
        with pytest.raises(UnknownSkuError, match="holds no products: ingest your product file"):
            agent.caption(COFFEE, sku="MUG-001")
    finally:
        agent.close()


@pytest.mark.slow
def test_eval_keeps_ptbtokenizer_chatter_out_of_the_output(capfd):
    pytest.importorskip("pycocoevalcap", reason="needs the [eval] extra")
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    from caption_agent.eval.coco import _without_tokenizer_chatter

    captions = {"1": [{"caption": "A black espresso cup."}], "2": [{"caption": "A cat, lying on a blanket!"}]}
    with _without_tokenizer_chatter():
        tokens = PTBTokenizer().tokenize(captions)
    assert tokens == {"1": ["a black espresso cup"], "2": ["a cat lying on a blanket"]}
    captured = capfd.readouterr()
    assert "PTBTokenizer" not in captured.err + captured.out
