import pytest

from caption_agent.drafters.colors import dominant_colors
from caption_agent.drafters.lite import imagenet_labels, phrase_candidates
from caption_agent.images import load_image

pytestmark = pytest.mark.slow


def test_labels_file_has_imagenet_classes():
    names = imagenet_labels()
    assert len(names) == 1000 and names[281] == "tabby cat" and names[967] == "espresso"


def test_drafts_depend_on_the_image(lite_drafter, images_dir):
    loaded = [load_image(images_dir / f) for f in ("chelsea.jpg", "coffee.jpg", "motorcycle.jpg")]
    drafts = lite_drafter.draft([i for i, _ in loaded], [x for _, x in loaded], n=5)
    cat, coffee, moto = drafts
    assert "cat" in cat.candidates[0].text.lower()
    assert coffee.labels[0][0] == "espresso" and coffee.labels[0][1] > 0.5
    assert any(w in moto.candidates[0].text.lower() for w in ("moped", "scooter", "motorcycle"))
    for d in drafts:
        texts = [c.text for c in d.candidates]
        assert len(texts) == 5 == len(set(texts))
        assert all(0 <= c.score <= 1 and c.drafter == "lite" and c.evidence for c in d.candidates)
        assert d.image.sha256 and d.model_id.startswith("efficientnet-lite0")


def test_batching_does_not_change_results(lite_drafter, images_dir):
    img, info = load_image(images_dir / "chelsea.jpg")
    alone = lite_drafter.classify([img])[0]
    other, _ = load_image(images_dir / "coffee.jpg")
    batched = lite_drafter.classify([other, img, other])[1]
    assert [n for n, _ in alone] == [n for n, _ in batched]
    assert abs(alone[0][1] - batched[0][1]) < 1e-4


def test_dominant_colors_of_flat_images():
    from PIL import Image

    assert dominant_colors(Image.new("RGB", (50, 50), (250, 250, 250)))[0][0] == "white"
    two = Image.new("RGB", (100, 100), (200, 30, 30))
    two.paste((30, 60, 200), (0, 0, 100, 40))
    names = [n for n, _ in dominant_colors(two)]
    assert names[:2] == ["red", "blue"]


def test_phrasing_without_colours_and_dedup():
    cands = phrase_candidates([("espresso", 0.9), ("cup", 0.05)], [], n=10)
    assert [c.text for c in cands][:2] == ["An espresso.", "A close-up of an espresso."]
    assert all("tones" not in c.text for c in cands)
