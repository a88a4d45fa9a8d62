"""The review desk in headless Chromium (Debian's /usr/bin/chromium driven by Playwright), worked from the
keyboard only: 50 held items (two captioned through the API, the others queued over real photos) are cleared
with one key per approval, after an edit in the item's language (an English edit of a de-DE item is refused
first), an undo, a reject and a skip; then a bulk approval that leaves the PII holds alone. The verdicts are
read back from the files the service wrote and applied with `caption-agent review import`."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from review_helpers import held_result, queue_held
from service_helpers import CHROMIUM, CHROMIUM_ARGS, live_service, make_agent, review_policy

from caption_agent.policies.review_text import reason_words

pytest.importorskip("fastapi")
pytestmark = pytest.mark.slow

KEY = "reviewer-key-0123456789"
ARTIFACT = Path(__file__).resolve().parents[1] / "artifacts" / "review.png"
GERMAN = "Eine Astronautin im weißen Anzug steht neben einer Flagge."


def test_a_reviewer_clears_fifty_items_from_the_keyboard(tmp_path, catalog_dir, lite_drafter, embedder, images_dir):
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"Debian's chromium is not installed at {CHROMIUM} (apt-get install -y chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    expect = sync_api.expect
    from typer.testing import CliRunner

    from caption_agent.cli import app
    from caption_agent.policies.review import ReviewQueue
    from caption_agent.policies.review_desk import ReviewDesk
    from caption_agent.policies.verdicts import read_decisions
    from caption_agent.service import hash_key

    queue = tmp_path / "review.jsonl"
    agent = make_agent(catalog_dir, lite_drafter, embedder, policy={"file": review_policy(tmp_path)})
    english = "A close view of an astronaut in a white suit standing beside a flag."
    special = ReviewQueue(queue).add(held_result(200, images_dir, locale="de-DE", text=english))
    with live_service(
        agent, api_key_hashes=[hash_key(KEY)], reviewers={hash_key(KEY): "rita"}, review_queue=queue
    ) as server:
        for name in ("chelsea.jpg", "coffee.jpg"):
            reply = httpx.post(
                f"{server.url}/v1/captions",
                headers={"X-API-Key": KEY},
                timeout=120,
                files={"image": (name, (images_dir / name).read_bytes(), "image/jpeg")},
                data={"key": name},
            )
            assert reply.status_code == 200 and reply.json()["status"] == "review", reply.text
        ids = [i["review_id"] for i in ReviewQueue(queue).items()] + queue_held(queue, images_dir, 47)
        assert len(ids) == 50 and ids[0] == special
        face_item = ids[3]  # held_result(0): one face box recorded by screening, one text box by the text reader

        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 950})
            console: list[str] = []
            page.on("console", lambda message: console.append(message.text))
            page.goto(f"{server.url}/review")
            page.fill("input[name=key]", KEY)  # no key yet: the sign-in form
            page.press("input[name=key]", "Enter")
            item = page.locator("#item")
            expect(item).to_have_attribute("data-review-id", special)
            expect(page.locator("#waiting")).to_have_text("50 waiting")
            assert page.input_value("#reviewer") == "rita"  # the name the service gives this key

            page.keyboard.press("?")
            expect(page.locator("#help")).to_be_visible()
            expect(page.locator("#help")).to_contain_text("approve the caption as it is")
            page.keyboard.press("Escape")
            expect(page.locator("#help")).to_be_hidden()

            # A de-DE item with an English caption: the edit box starts empty, with a hint.
            expect(page.locator("#edit-hint")).to_contain_text("German")
            assert page.input_value("#edit-text") == ""
            expect(page.locator(".reason .message").first).to_have_text(reason_words()["confidence"]["message"])
            page.keyboard.press("e")
            page.keyboard.type(english)
            page.keyboard.press("Control+Enter")
            expect(page.locator("#status.error")).to_contain_text("language")
            page.fill("#edit-text", GERMAN)
            page.keyboard.press("Control+Enter")
            expect(item).to_have_attribute("data-review-id", ids[1])
            page.keyboard.press("u")  # undo: the edited item is back
            expect(item).to_have_attribute("data-review-id", special)
            page.keyboard.press("e")
            page.keyboard.type(GERMAN)
            page.keyboard.press("Control+Enter")
            expect(item).to_have_attribute("data-review-id", ids[1])
            assert "cat" in page.inner_text("#draft").lower()
            page.keyboard.press("r")  # reject chelsea
            expect(item).to_have_attribute("data-review-id", ids[2])
            page.keyboard.press("s")  # skip coffee for now
            expect(item).to_have_attribute("data-review-id", face_item)
            expect(page.locator("#overlay rect.face")).to_have_count(1)
            expect(page.locator("#overlay rect.textbox")).to_have_count(1)  # the line of text read in the photo
            expect(page.locator("#boxes-note")).to_have_text("1 face outlined · 1 text line outlined")
            assert page.eval_on_selector("#photo", "img => img.naturalWidth") > 0
            page.screenshot(path=str(ARTIFACT.with_name("review-face.png")))
            page.keyboard.press("k")  # back to coffee
            expect(item).to_have_attribute("data-review-id", ids[2])

            presses = 0
            while page.locator("#empty").is_hidden():  # one key per approval
                shown = item.get_attribute("data-review-id")
                page.keyboard.press("a")
                presses += 1
                assert presses <= 48
                if presses < 48:
                    expect(item).not_to_have_attribute("data-review-id", shown)
                else:
                    expect(page.locator("#empty")).to_be_visible()
            assert presses == 48
            expect(page.locator("#waiting")).to_have_text("0 waiting")

            # More items arrive; Shift+A approves those the filters show, except the PII holds.
            more = queue_held(queue, images_dir, 6, start=100)  # n = 104 is held for PII
            page.reload()
            expect(page.locator("#waiting")).to_have_text("6 waiting")
            page.keyboard.press("Shift+A")
            expect(page.locator("#confirm")).to_be_visible()
            expect(page.locator("#confirm-text")).to_contain_text("Approve 5 items matching these filters?")
            expect(page.locator("#confirm-text")).to_contain_text("1 matching item(s) are left out")
            page.keyboard.press("Enter")
            expect(page.locator("#waiting")).to_have_text("1 waiting")
            expect(item).to_have_attribute("data-review-id", more[4])
            ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACT))
            browser.close()
        assert not [line for line in console if "Content Security Policy" in line], console
        print(f"review desk screenshot: {ARTIFACT}")

        decisions = server.state.settings.decisions_path(queue)
        verdicts = read_decisions(decisions)
        assert len(verdicts) == 55 and all(v.reviewer == "rita" for v in verdicts.values())
        assert verdicts[special].verdict == "edit" and verdicts[special].text == GERMAN
        assert verdicts[ids[1]].verdict == "reject" and verdicts[ids[2]].verdict == "approve"
        assert more[4] not in verdicts
        history = ReviewDesk(queue, decisions).history(special)
        assert [h["action"] for h in history] == ["edit", "undo", "edit"]

    out = tmp_path / "reviewed.jsonl"
    done = CliRunner().invoke(app, ["review", "import", str(decisions), "--results", str(queue), "--out", str(out)])
    assert done.exit_code == 0, done.output
    reviewed = {r["key"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert reviewed["chelsea.jpg"]["status"] == "blocked" and reviewed["item-00200"]["text"] == GERMAN
    statuses = [r["status"] for r in reviewed.values()]  # 53 approved + 1 edited; 1 rejected; 1 PII hold waits
    assert (statuses.count("ok"), statuses.count("blocked"), statuses.count("review")) == (54, 1, 1)
