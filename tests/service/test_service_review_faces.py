"""The review page shows the face count and boxes that screening recorded (or that faces were not counted)."""

from __future__ import annotations

import pytest

pytest.importorskip("jinja2")


def item(details: dict | None) -> dict:
    decisions = (
        [] if details is None else [{"rule": "image_safety", "action": "allow", "reason": "ok", "details": details}]
    )
    return {"review_id": "r1", "image": "a.jpg", "text": "t", "draft": "d", "result": {"decisions": decisions}}


def test_the_page_shows_faces_from_screening():
    from caption_agent.service.review import render, view_item

    view = view_item(item({"faces": 1, "face_boxes": [[175, 60, 265, 170, 1.0]]}))
    assert (view["faces"], view["face_boxes"]) == (1, [[175, 60, 265, 170, 1.0]])
    html = render("review.html", items=[view], queue="q", decisions="d")
    assert "Faces" in html and "[175, 60," in html
    html = render("review.html", items=[view_item(item({"faces": None, "face_boxes": None}))], queue="q", decisions="d")
    assert "not counted" in html
    assert "Faces" not in render("review.html", items=[view_item(item(None))], queue="q", decisions="d")
