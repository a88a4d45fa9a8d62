"""The review desk's JSON API through a live server (httpx): pages, filters, item view, claims, bulk verdicts
that leave safety holds alone, undo and history, reviewer names per API key, edits in the item's language,
quality numbers (API and Prometheus), another attempt, the audit sample, `review import` of what the service
wrote, and the offline /docs page."""

from __future__ import annotations

import json

import httpx
import pytest
from review_helpers import held_result, queue_held
from service_helpers import live_service, make_agent, review_policy

from caption_agent.policies.review_text import reason_words

pytest.importorskip("fastapi")
pytestmark = pytest.mark.slow

KEY, OTHER_KEY = "desk-key-rita-0123456789", "desk-key-sam-01234567890"


@pytest.fixture(scope="module")
def desk_server(tmp_path_factory, catalog_dir, lite_drafter, embedder, images_dir):
    from caption_agent.service import hash_key

    tmp = tmp_path_factory.mktemp("desk")
    queue = tmp / "review.jsonl"
    agent = make_agent(catalog_dir, lite_drafter, embedder, policy={"file": review_policy(tmp)})
    with live_service(
        agent,
        api_key_hashes=[hash_key(KEY), hash_key(OTHER_KEY)],
        reviewers={hash_key(KEY): "rita", hash_key(OTHER_KEY): "sam"},
        review_queue=queue,
    ) as server:
        ids = queue_held(queue, images_dir, 30)
        yield server, ids


def client(server, key=KEY, session="s-rita"):
    return httpx.Client(base_url=server.url, headers={"X-API-Key": key, "X-Review-Session": session}, timeout=120)


def test_pages_filters_and_the_item_at_a_glance(desk_server):
    server, ids = desk_server
    with client(server) as c:
        page = c.get("/review/api/items", params={"limit": 10}).json()
        assert page["total"] == page["waiting"] == 30 and [i["review_id"] for i in page["items"]] == ids[:10]
        assert c.get("/review/api/items", params={"locale": "de-DE"}).json()["total"] == 10
        pii = c.get("/review/api/items", params={"rule": "pii", "limit": 100}).json()
        assert pii["total"] == 6 and all(i["safety"] for i in pii["items"])
        assert (
            c.get("/review/api/items", params={"style": "social", "sort": "newest"}).json()["items"][0]["review_id"]
            == ids[28]
        )
        assert c.get("/review/api/items", params={"sort": "sideways"}).status_code == 422
        # Past SQLite's 64-bit integers: a 422 that says so, not a 500 from the database (found by schemathesis).
        huge = c.get("/review/api/items", params={"offset": 115938900095163301888})
        assert huge.status_code == 422 and "offset" in huge.text
        assert c.get("/review/api/items", params={"offset": 2**40}).json()["items"] == []
        facets = c.get("/review/api/facets").json()
        assert facets["refiner"] == ["draft", "template"] and "pii" in facets["rule"]
        view = c.get(f"/review/api/items/{ids[0]}").json()  # item 0: a face, en-US, held for confidence
        assert view["source"].startswith("chelsea.jpg · in ") and "<bytes>" not in view["source"]
        assert view["boxes"]["faces"][0]["score"] == 0.98 and view["boxes"]["width"] == 451
        assert [r["message"] for r in view["reasons"]] == [reason_words()["confidence"]["message"]]
        assert "confidence: held for a person" in view["reasons"][0]["detail"]
        assert view["edit_start"] == view["text"] and view["language"].startswith("English")
        german = c.get(f"/review/api/items/{ids[2]}").json()
        assert german["edit_start"].startswith("Eine Nahaufnahme") and german["edit_hint"] == ""
        assert c.get("/review/api/items/0123456789abcdef").status_code == 404
        image = c.get(f"/review/images/{ids[0]}")
        assert image.status_code == 200 and image.headers["content-type"] == "image/jpeg"


def test_edits_in_the_wrong_language_are_refused(desk_server):
    server, ids = desk_server
    with client(server) as c:
        english = "A close view of the subject in bright daylight, seen from the front."
        refused = c.post("/review/decisions", json={"review_id": ids[5], "verdict": "edit", "text": english})
        assert refused.status_code == 422 and [r["rule"] for r in refused.json()["error"]["rules"]] == ["language"]
        assert "language" in refused.json()["error"]["fix"] and "suggestion" not in refused.json()["error"]


def test_claims_bulk_undo_history_names_and_numbers(desk_server):
    server, ids = desk_server
    with client(server) as rita, client(server, OTHER_KEY, "s-sam") as sam:
        assert rita.post(f"/review/api/items/{ids[1]}/claim").json() == {"review_id": ids[1], "claimed_by": "rita"}
        taken = sam.post(f"/review/api/items/{ids[1]}/claim")
        assert taken.status_code == 409 and "being judged by rita" in taken.json()["error"]["message"]
        assert ids[1] not in [
            i["review_id"] for i in sam.get("/review/api/items", params={"limit": 100}).json()["items"]
        ]
        assert sam.post("/review/decisions", json={"review_id": ids[1], "verdict": "reject"}).status_code == 409
        ack = rita.post("/review/decisions", json={"review_id": ids[1], "verdict": "approve", "reviewer": "mallory"})
        assert ack.status_code == 200 and ack.json()["reviewer"] == "rita"  # the key's name, not the typed one
        assert "review import" in ack.json()["import_command"]
        undone = rita.post("/review/decisions", json={"review_id": ids[1], "verdict": "undo"})
        assert undone.status_code == 200
        edit = "A chelsea photo, edited by hand in bright daylight."
        rita.post("/review/decisions", json={"review_id": ids[1], "verdict": "edit", "text": edit}).raise_for_status()
        history = rita.get(f"/review/api/items/{ids[1]}/history").json()
        assert [(h["action"], h["reviewer"]) for h in history] == [
            ("approve", "rita"),
            ("undo", "rita"),
            ("edit", "rita"),
        ]
        assert history[2]["after"] == edit and history[2]["before"] and history[2]["at"]

        body = {"verdict": "approve", "filters": {"locale": "en-US"}}
        plan = sam.post("/review/api/bulk/preview", json=body).json()
        # en-US: 20 items, 1 decided, 4 held for PII (never bulk-approved)
        pii_en = sum(1 for n in range(30) if n % 3 != 2 and n % 5 == 4)
        assert plan["count"] == 20 - 1 - pii_en and plan["left_out"] == pii_en
        stale = sam.post("/review/api/bulk", json={**body, "expected": plan["count"] + 1})
        assert stale.status_code == 409 and "selection changed" in stale.json()["error"]["message"]
        done = sam.post("/review/api/bulk", json={**body, "expected": plan["count"]}).json()
        assert done["done"] == plan["count"]
        left = sam.get("/review/api/items", params={"locale": "en-US", "limit": 100}).json()["items"]
        assert len(left) == pii_en and all(i["safety"] for i in left)
        rejected = sam.post(
            "/review/api/bulk", json={"verdict": "reject", "filters": {"rule": "pii", "locale": "en-US"}}
        )
        assert rejected.json()["done"] == pii_en

        stats = rita.get("/review/api/stats", params={"by": "locale", "period": "day"}).json()
        (en,) = [r for r in stats["rows"] if r["locale"] == "en-US"]
        assert en["n"] == 20 and en["edited"] == 1 and en["rejected"] == pii_en
        assert en["acceptance"] == pytest.approx((20 - 1 - pii_en) / 20)
        assert rita.get("/review/api/stats", params={"by": "colour"}).status_code == 422
        assert rita.get("/review/api/waiting").json() == {"waiting": 10}
        metrics = httpx.get(f"{server.url}/metrics").text
        assert 'caption_agent_review_outcomes_total{drafter="lite",locale="en-US"' in metrics
        assert "caption_agent_review_edit_distance_words_bucket" in metrics
        assert "caption_agent_review_waiting 10.0" in metrics


def test_import_applies_what_the_service_wrote(desk_server, tmp_path):
    from typer.testing import CliRunner

    from caption_agent.cli import app

    server, _ = desk_server
    queue = server.state.review_queue
    out = tmp_path / "reviewed.jsonl"
    done = CliRunner().invoke(
        app,
        [
            "review",
            "import",
            str(server.state.settings.decisions_path(queue)),
            "--results",
            str(queue),
            "--out",
            str(out),
        ],
    )
    assert done.exit_code == 0, done.output
    statuses = [json.loads(line)["status"] for line in out.read_text().splitlines()]
    assert len(statuses) == 30 and statuses.count("review") >= 10 and "ok" in statuses and "blocked" in statuses


def test_docs_work_offline(desk_server):
    server, _ = desk_server
    page = httpx.get(f"{server.url}/docs")
    assert page.status_code == 200 and "http" not in page.text.split("<body")[0].replace("http-equiv", "")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self';" in csp and "https:" not in csp and "cdn" not in csp
    for name in ("swagger-ui-bundle.js", "swagger-ui.css"):
        asset = httpx.get(f"{server.url}/docs/assets/{name}")
        assert asset.status_code == 200 and len(asset.content) > 100_000
    assert httpx.get(f"{server.url}/docs/assets/index.html").status_code == 404
    assert httpx.get(f"{server.url}/static/docs.js").status_code == 200


def test_another_attempt_uses_the_next_refiner(tmp_path, catalog_dir, lite_drafter, embedder, images_dir):
    from caption_agent import AgentConfig, CaptionAgent
    from caption_agent.policies.review import ReviewQueue, queue_item
    from caption_agent.schemas import ProductHint

    queue = tmp_path / "review.jsonl"
    config = AgentConfig.load(retrieval={"catalog_dir": catalog_dir}, refiner={"backend": "template"},
                              policy={"file": review_policy(tmp_path)})  # fmt: skip
    agent = CaptionAgent(config, drafter=lite_drafter, embedder=embedder)
    with live_service(agent, review_queue=queue) as server, client(server) as c:
        q = ReviewQueue(queue)
        vllm = {"drafter": "lite", "refiner": "vllm", "refined_by": "vllm"}
        by_vllm = q.add(held_result(1, images_dir, provenance=vllm))
        by_template = q.add(held_result(3, images_dir))  # refined_by "draft": every link was tried
        # The coffee photo, first captioned for one product: another attempt grounds on that product again.
        for_mug = q.add(held_result(7, images_dir, hint=ProductHint(sku="MUG-002"), provenance=vllm))
        again = c.post(f"/review/api/items/{by_vllm}/retry")
        assert again.status_code == 200, again.text
        assert again.json()["refined_by"] in ("template", "draft") and again.json()["status"] in ("ok", "review")
        assert again.json()["hint"] == {}  # (its facts: MUG-001 and MUG-002, found by similarity)
        mug = c.post(f"/review/api/items/{for_mug}/retry").json()
        assert mug["hint"] == {"sku": "MUG-002"} and mug["facts"], mug  # the result keeps the hint it was given
        assert all(f.startswith("MUG-002:") for f in mug["facts"]), mug["facts"]  # the sku is retrieval's filter
        assert [h["action"] for h in c.get(f"/review/api/items/{by_vllm}/history").json()] == ["retry"]
        # A queue line edited by hand with a hint no request could carry: refused with what to do, not a 500.
        odd = queue_item(held_result(13, images_dir, provenance=vllm))
        odd["result"]["hint"] = {"sku": "x" * 200}
        with queue.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(odd) + "\n")
        refused = c.post(f"/review/api/items/{odd['review_id']}/retry")
        assert refused.status_code == 409 and "product hint" in refused.json()["error"]["message"], refused.text
        none_left = c.post(f"/review/api/items/{by_template}/retry")
        assert none_left.status_code == 409 and "no refiner after the draft" in none_left.json()["error"]["message"]


def test_an_audit_share_of_ok_results_reaches_the_desk(tmp_path, images_dir):
    from types import SimpleNamespace

    from caption_agent.policies.review import ReviewQueue
    from caption_agent.schemas import CaptionRequest
    from caption_agent.service import ServiceSettings
    from caption_agent.service.keep import keep_for_review

    queue = tmp_path / "review.jsonl"
    data = (images_dir / "coffee.jpg").read_bytes()
    ok = held_result(1, images_dir).model_copy(update={"status": "ok", "decisions": []})
    for share, expected in ((0.0, 0), (1.0, 1)):
        state = SimpleNamespace(review_queue=queue, settings=ServiceSettings(audit_share=share, warmup=False))
        keep_for_review(state, [CaptionRequest(image=data)], [ok])
        assert len(list(ReviewQueue(queue).items())) == expected
    (item,) = ReviewQueue(queue).items()
    assert item["audit"] is True and item["reasons"][0].startswith("audit")
    assert (queue.with_name("review.jsonl.images") / ok.image.sha256).is_file()
    assert ServiceSettings().audit_share == 0.05
