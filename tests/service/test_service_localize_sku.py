"""/v1/localize with a sku and no facts takes that product's facts from the service's own catalog (issue #29)."""

from __future__ import annotations

import pytest
from service_helpers import live_service


@pytest.mark.slow
def test_localize_with_a_sku_uses_the_services_catalog(catalog_dir, lite_drafter, embedder):
    import httpx

    from caption_agent import AgentConfig, CaptionAgent

    agent = CaptionAgent(
        AgentConfig.load(retrieval={"catalog_dir": catalog_dir}, refiner={"backend": "template"}),
        drafter=lite_drafter,
        embedder=embedder,
    )

    body = {"text": "A black espresso cup.", "locales": ["de-DE"], "style": "seo_product", "sku": "MUG-001"}
    with live_service(agent) as server:  # closes the agent
        reply = httpx.post(f"{server.url}/v1/localize", json=body, timeout=120)
        unknown = httpx.post(f"{server.url}/v1/localize", json={**body, "sku": "NOPE-1"}, timeout=120)
    assert reply.status_code == 200, reply.text
    result = reply.json()["results"][0]
    assert {f["id"].split(":")[0] for f in result["facts"]} == {"MUG-001"}
    assert "no catalog facts" not in str(result.get("reasons"))
    assert unknown.status_code == 422 and unknown.json()["error"]["type"] == "UnknownSkuError"
