"""The review desk draws the face (and text) boxes that screening recorded, in the coordinates of the image the
rules looked at, and says when faces were not counted."""

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
        "faces": [{"box": [175.0, 60.0, 265.0, 170.0], "score": 1.0}], "texts": [],
    }  # fmt: skip
    assert view["source"] == "uploaded image upload-1 · 2000×1000 px · sha256 abababababab"  # never "<bytes>"
    unknown = boxes(item({"faces": None, "face_boxes": None}, width=10, height=10)["result"])
    assert unknown["screened"] and not unknown["faces_counted"] and unknown["faces"] == []
    assert not boxes(item(None)["result"])["screened"]
