"""The review desk draws the face boxes that screening recorded and the text boxes the text reader (OCR) recorded,
in the coordinates of the image the rules looked at (the working copy), and says when faces were not counted."""

from __future__ import annotations

import pytest

pytest.importorskip("jinja2")


def item(details: dict | None, **image) -> dict:
    decisions = (
        [] if details is None else [{"rule": "image_safety", "action": "allow", "reason": "ok", "details": details}]
    )
    result = {"decisions": decisions, "image": {"source": "<bytes>", "sha256": "ab" * 32, **image}}
    return {"review_id": "r1", "key": "upload-1", "image": "<bytes>", "text": "t", "draft": "d", "result": result}


def test_face_boxes_come_with_the_size_they_were_found_at():
    from caption_agent.service.review_view import boxes, item_view

    found = item({"faces": 1, "face_boxes": [[175, 60, 265, 170, 1.0]]}, width=2000, height=1000,
                 working_width=1000, working_height=500)  # fmt: skip
    view = item_view(found, [])
    assert view["boxes"] == {
        "width": 1000, "height": 500, "screened": True, "faces_counted": True,
        "faces": [{"box": [175.0, 60.0, 265.0, 170.0], "score": 1.0}], "text_read": False, "texts": [],
    }  # fmt: skip
    assert view["source"] == "uploaded image upload-1 · 2000×1000 px · sha256 abababababab"  # never "<bytes>"
    unknown = boxes(item({"faces": None, "face_boxes": None}, width=10, height=10)["result"])
    assert unknown["screened"] and not unknown["faces_counted"] and unknown["faces"] == []
    assert not boxes(item(None)["result"])["screened"]


def test_text_boxes_keep_the_largest_lines_in_reading_order():
    from caption_agent.ocr import MAX_TEXT_BOXES, TextLine, text_boxes

    # 40 lines, top to bottom, each taller than the one above: the 32 largest are the last 32, still in order.
    lines = [TextLine(f"line {i}", 0.9, (10, 20 * i, 110, 20 * i + 5 + i // 4)) for i in range(40)]
    kept = text_boxes(lines)
    assert len(kept) == MAX_TEXT_BOXES and kept[0] == [10, 160, 110, 167, 0.9] and kept[-1][1] == 780
    assert [b[1] for b in kept] == sorted(b[1] for b in kept)


@pytest.mark.slow
def test_text_read_in_the_photo_reaches_the_desk_in_working_copy_pixels(tmp_path, catalog_dir, embedder, images_dir):
    pytest.importorskip("rapidocr_onnxruntime", reason="needs the [ocr] extra")
    import io

    import httpx
    from PIL import Image
    from service_helpers import live_service, make_agent, review_policy

    from caption_agent.config import LiteDrafterSettings
    from caption_agent.drafters.lite import LiteDrafter
    from caption_agent.eval.policies import render_text
    from caption_agent.policies.review import ReviewQueue

    # A photo twice the working size (1024 px) with a label on it: the boxes must be in the working copy's pixels.
    photo = Image.open(images_dir / "coffee.jpg").convert("RGB").resize((2048, 1536))
    label, at = render_text("HOLLOWELL ESPRESSO CUP", width=900), (600, 1300)
    photo.paste(label, at)
    data = io.BytesIO()
    photo.save(data, "PNG")
    x0, y0, x1, y1 = (v / 2 for v in (at[0], at[1], at[0] + label.width, at[1] + label.height))

    queue = tmp_path / "review.jsonl"
    reader = LiteDrafter(LiteDrafterSettings(ocr=True))
    agent = make_agent(catalog_dir, reader, embedder, policy={"file": review_policy(tmp_path)})
    with live_service(agent, review_queue=queue) as server:
        reply = httpx.post(f"{server.url}/v1/captions", data={"key": "label"}, timeout=120,
                           files={"image": ("label.png", data.getvalue(), "image/png")})  # fmt: skip
        assert reply.status_code == 200 and reply.json()["status"] == "review", reply.text
        image = reply.json()["image"]
        assert (image["width"], image["working_width"], image["working_height"]) == (2048, 1024, 768)
        recorded = image["text_boxes"]
        assert 1 <= len(recorded) <= 32, recorded
        for bx0, by0, bx1, by1, score in recorded:  # inside the label, a few pixels of slack for the detector
            assert x0 - 4 <= bx0 < bx1 <= x1 + 4 and y0 - 4 <= by0 < by1 <= y1 + 4 and score >= 0.5, recorded
        assert max(b[2] - b[0] for b in recorded) > 100  # the line itself, not a speck
        [queued] = ReviewQueue(queue).items()
        view = httpx.get(f"{server.url}/review/api/items/{queued['review_id']}", timeout=30).json()
    boxes = view["boxes"]
    assert boxes["text_read"] and (boxes["width"], boxes["height"]) == (1024, 768)
    assert [t["box"] + [t["score"]] for t in boxes["texts"]] == recorded
    assert "HOLLOWELL" in view["image_text"].upper()
