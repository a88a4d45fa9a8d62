"""The review page in headless Chromium (Debian's /usr/bin/chromium driven by Playwright): two results sent to
review through the API, one approved and one edited in the page (an edit with an email address is refused
inline first); the verdicts are read back with policies.review and applied with import_decisions, as
`caption-agent review import` does."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from service_helpers import CHROMIUM, CHROMIUM_ARGS, live_service, make_agent, review_policy

pytest.importorskip("fastapi")
pytestmark = pytest.mark.slow

KEY = "reviewer-key-0123456789"
ARTIFACT = Path(__file__).resolve().parents[1] / "artifacts" / "review.png"


def test_reviewer_approves_one_and_edits_one(tmp_path, catalog_dir, lite_drafter, embedder, images_dir):
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"Debian's chromium is not installed at {CHROMIUM} (apt-get install -y chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    from caption_agent.policies.review import ReviewQueue
    from caption_agent.policies.verdicts import import_decisions, pending_items, read_decisions
    from caption_agent.service import hash_key

    queue = tmp_path / "review.jsonl"
    agent = make_agent(catalog_dir, lite_drafter, embedder, policy={"file": review_policy(tmp_path)})
    with live_service(agent, api_key_hashes=[hash_key(KEY)], review_queue=queue) as server:
        results = []
        for name in ("chelsea.jpg", "coffee.jpg"):
            data = (images_dir / name).read_bytes()
            reply = httpx.post(
                f"{server.url}/v1/captions",
                headers={"X-API-Key": KEY},
                timeout=120,
                files={"image": (name, data, "image/jpeg")},
                data={"key": name},
            )
            assert reply.status_code == 200 and reply.json()["status"] == "review", reply.text
            results.append(reply.json())
        items = list(ReviewQueue(queue).items())
        assert [i["key"] for i in items] == ["chelsea.jpg", "coffee.jpg"]

        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.goto(f"{server.url}/review")
            page.fill("input[name=key]", KEY)  # no key yet: the sign-in form
            page.click("button[type=submit]")
            page.wait_for_selector("section.item")
            assert page.locator("section.item").count() == 2
            images_ok = page.eval_on_selector_all("section.item img", "els => els.map(e => e.naturalWidth > 0)")
            assert images_ok == [True, True]
            first, second = (page.locator(f"section[data-review-id='{i['review_id']}']") for i in items)
            assert "cat" in first.locator(".draft").inner_text().lower()
            page.fill("#reviewer", "rita")
            first.locator("button[data-verdict=approve]").click()
            second.locator(".edit-text").fill("A white coffee cup; orders to cups@example.com")
            second.locator("button[data-verdict=edit]").click()  # PII in the edit: refused, shown inline
            sync_api.expect(second.locator(".status.error")).to_contain_text("the edit was not saved: pii")
            sync_api.expect(second.locator(".status")).to_contain_text(
                'would publish: "A white coffee cup; orders to [email]"'
            )
            assert "done" not in (second.get_attribute("class") or "")
            page.screenshot(path=str(ARTIFACT.with_name("review-refused.png")), full_page=True)
            second.locator(".edit-text").fill("A white coffee cup on a saucer.")
            second.locator("button[data-verdict=edit]").click()
            for section, verdict in ((first, "approve"), (second, "edit")):
                sync_api.expect(section.locator(".status")).to_have_text(f"recorded: {verdict}")
            second.locator("button[data-verdict=reject]").evaluate("b => b.closest('.item').classList.remove('done')")
            second.locator("button[data-verdict=reject]").click()  # a second verdict for the same item is refused
            sync_api.expect(second.locator(".status")).to_contain_text("already has a verdict")
            ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACT), full_page=True)
            browser.close()
        print(f"review page screenshot: {ARTIFACT}")

        decisions_file = server.state.settings.decisions_path(queue)
        verdicts = read_decisions(decisions_file)
        assert {rid: v.verdict for rid, v in verdicts.items()} == {
            items[0]["review_id"]: "approve",
            items[1]["review_id"]: "edit",
        }
        assert verdicts[items[1]["review_id"]].text == "A white coffee cup on a saucer."
        assert all(v.reviewer == "rita" for v in verdicts.values())
        assert pending_items(queue, decisions_file) == []

    results_file = tmp_path / "results.jsonl"
    results_file.write_text("".join(json.dumps(r) + "\n" for r in results), encoding="utf-8")
    report = import_decisions(decisions_file, results_file, tmp_path / "reviewed.jsonl")
    assert (report.approved, report.edited, report.rejected, report.held) == (1, 1, 0, [])
    reviewed = [json.loads(line) for line in (tmp_path / "reviewed.jsonl").read_text().splitlines()]
    assert [r["status"] for r in reviewed] == ["ok", "ok"]
    assert reviewed[1]["text"] == "A white coffee cup on a saucer."
