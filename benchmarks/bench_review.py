"""The review desk's speed in real Chromium: time to open a 10,000-item queue, and key press -> next item shown.

A queue of ``items`` held results over the repository's photos is written the way the pipeline writes it; the
service runs in this process (uvicorn thread, lite drafter, refiner none, no keys); Chromium (Debian's
/usr/bin/chromium, driven by Playwright) opens /review. Reported:

- ``index_catch_up_s``: the desk's SQLite index built from the whole queue file (first open ever; later opens
  only read what was appended since);
- ``open_s``: page navigation -> the first item fully shown (photo, reasons, diff), over ``opens`` loads;
- ``api_page_ms`` / ``api_item_ms``: one page of 50 summaries / one item view, through HTTP;
- ``key_to_next_ms``: p50/p95 from pressing `a` (approve) to the next item fully shown, over ``presses`` keys.

Targets (issue #26): open <= 1 s for 10,000 items, p95 key -> next <= 300 ms.

    .venv/bin/python benchmarks/bench_review.py --quick --out bench_review.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "service"))  # the tests' queue builder and live server: one copy


def write_queue(path: Path, items: int) -> None:
    from review_helpers import held_result

    from caption_agent.policies.review import queue_item

    with path.open("w", encoding="utf-8") as fh:
        for n in range(items):
            fh.write(json.dumps(queue_item(held_result(n, REPO / "examples" / "images")), ensure_ascii=False) + "\n")


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def run(quick: bool = True, items: int = 10_000) -> dict[str, Any]:
    import httpx
    from playwright.sync_api import sync_playwright
    from service_helpers import CHROMIUM, CHROMIUM_ARGS, live_service

    from caption_agent import AgentConfig, CaptionAgent
    from caption_agent.policies.review_desk import ReviewDesk

    presses, opens = (60, 3) if quick else (200, 5)
    tmp = Path(tempfile.mkdtemp(prefix="bench-review-"))
    queue = tmp / "review.jsonl"
    t0 = time.perf_counter()
    write_queue(queue, items)
    write_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    waiting = ReviewDesk(queue, tmp / "review.jsonl.decisions.jsonl").waiting()
    catch_up_s = time.perf_counter() - t0
    assert waiting == items, waiting
    agent = CaptionAgent(AgentConfig.load(refiner={"backend": "none"}))
    out: dict[str, Any] = {"items": items, "write_queue_s": round(write_s, 2), "index_catch_up_s": round(catch_up_s, 3)}
    with live_service(agent, review_queue=queue) as server:
        with httpx.Client(base_url=server.url) as client:
            page_ms, item_ms = [], []
            for i in range(20):
                t0 = time.perf_counter()
                page = client.get("/review/api/items", params={"limit": 50, "offset": i * 50}).json()
                page_ms.append((time.perf_counter() - t0) * 1000)
                t0 = time.perf_counter()
                client.get(f"/review/api/items/{page['items'][0]['review_id']}").raise_for_status()
                item_ms.append((time.perf_counter() - t0) * 1000)
        out["api_page_ms"] = {"p50": round(statistics.median(page_ms), 1), "max": round(max(page_ms), 1)}
        out["api_item_ms"] = {"p50": round(statistics.median(item_ms), 1), "max": round(max(item_ms), 1)}
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            view = browser.new_page(viewport={"width": 1400, "height": 950})
            open_s = []
            for _ in range(opens):
                t0 = time.perf_counter()
                view.goto(f"{server.url}/review")
                view.wait_for_selector("#item[data-full='1']")
                open_s.append(time.perf_counter() - t0)
            out["open_s"] = {
                "first": round(open_s[0], 3),  # a fresh browser: scripts and styles not cached yet
                "median": round(statistics.median(open_s), 3),
                "max": round(max(open_s), 3),
            }
            key_ms = []
            for _ in range(presses):
                shown = view.get_attribute("#item", "data-review-id")
                t0 = time.perf_counter()
                view.keyboard.press("a")
                view.wait_for_function(
                    "id => { const box = document.getElementById('item');"
                    " return box.dataset.reviewId !== id && box.dataset.full === '1'; }",
                    arg=shown,
                    polling="raf",
                )
                key_ms.append((time.perf_counter() - t0) * 1000)
            view.wait_for_function(  # every approval was recorded (a function: the page's CSP forbids eval)
                "n => document.getElementById('waiting').textContent === n + ' waiting'", arg=items - presses
            )
            browser.close()
        out["key_to_next_ms"] = {
            "presses": presses,
            "p50": round(statistics.median(key_ms), 1),
            "p95": round(_pct(key_ms, 0.95), 1),
            "max": round(max(key_ms), 1),
        }
    out["targets_met"] = {
        "open_le_1s": out["open_s"]["max"] <= 1.0,
        "key_p95_le_300ms": out["key_to_next_ms"]["p95"] <= 300,
    }
    out["machine"] = {"python": platform.python_version(), "cpus": __import__("os").cpu_count()}
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="60 key presses and 3 opens (else 200 and 5).")
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    report = run(args.quick, args.items)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
