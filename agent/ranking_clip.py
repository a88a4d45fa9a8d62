"""CLIP-S ranking: how well each draft matches the image, by a CLIP model (transformers, hub id or local folder).

CLIP-S = 2.5 * max(cos(image, text), 0) (Hessel et al., 2021, "CLIPScore"). It is clipped to [0, 1] as the
ranker's quality score and blended with the drafter's own probability by ``Ranker.rank``. Which CLIP was used is
part of ``model_id`` and so of every result's provenance: CLIP-S values are only comparable for one model.
"""

from __future__ import annotations

import threading
from typing import Any, Sequence

import numpy as np

from caption_agent._extras import require
from caption_agent.config_sections import RankerSettings
from caption_agent.embedders import EmbedderSource
from caption_agent.errors import BackendUnavailableError, CaptionAgentError, ConfigError, UnsupportedModelError
from caption_agent.ranking import Ranker
from caption_agent.schemas import Candidate

CLIP_S_WEIGHT = 2.5


class ClipRanker(Ranker):
    """Scores drafts by CLIP-S against the image. Any dual encoder with get_image/text_features works."""

    name = "clip"
    gives_clip_s = True

    def __init__(self, model: str, drafter_weight: float = 0.5, device: str | None = None) -> None:
        super().__init__(drafter_weight)
        self._torch = torch = require("torch", "lite", "CLIP-S ranking")
        tf = require("transformers", "lite", "CLIP-S ranking")
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        try:
            self._model = tf.AutoModel.from_pretrained(model).to(self.device).eval()
            if not (hasattr(self._model, "get_image_features") and hasattr(self._model, "get_text_features")):
                raise UnsupportedModelError(
                    f"ranker.clip_model {model!r} ({type(self._model).__name__}) is not a "
                    "CLIP-style image-text model; CLIP-S needs get_image_features and "
                    "get_text_features.",
                    fix="use a CLIP model (e.g. openai/clip-vit-base-patch32) or unset ranker.clip_model.",
                )
            self._tokenizer = tf.AutoTokenizer.from_pretrained(model)
            self._images = tf.AutoImageProcessor.from_pretrained(model)
        except (OSError, ValueError) as exc:
            raise BackendUnavailableError(
                f"cannot load the CLIP model {model!r}: {str(exc).splitlines()[0][:300]}",
                fix="set ranker.clip_model to a CLIP hub id or a local folder with its "
                "weights, tokenizer and image processor; unset it to rank by "
                "consensus.",
            ) from exc
        text_cfg = self._model.config.get_text_config()
        self._max_len = min(
            int(getattr(text_cfg, "max_position_embeddings", 77)),
            int(getattr(self._tokenizer, "model_max_length", 77) or 77),
        )
        self.model_id = f"{model} (CLIP-S, w={CLIP_S_WEIGHT:g})"
        self._lock = threading.Lock()  # torch modules are not re-entrant across threads

    @classmethod
    def from_settings(cls, settings: RankerSettings, embedder: EmbedderSource) -> Ranker:
        """CLIP-S with ``ranker.clip_model`` (the config refuses backend 'clip' without one); no embedder."""
        if not settings.clip_model:
            raise ConfigError("the clip ranker needs ranker.clip_model.", fix="set it to a CLIP hub id or folder.")
        return cls(settings.clip_model, drafter_weight=settings.drafter_weight)

    def clip_s(self, texts: Sequence[str], image: Any) -> np.ndarray:
        """CLIP-S of each text against one PIL image."""
        if image is None:
            raise CaptionAgentError(
                "CLIP-S ranking needs the image, got None.",
                fix="pass the decoded image to rank(), or rank by consensus.",
            )
        torch = self._torch
        pixels = self._images(images=[image.convert("RGB")], return_tensors="pt")["pixel_values"]
        tokens = self._tokenizer(
            list(texts), padding=True, truncation=True, max_length=self._max_len, return_tensors="pt"
        )
        with self._lock, torch.inference_mode():
            img = _pooled(self._model.get_image_features(pixel_values=pixels.to(self.device)))
            txt = _pooled(
                self._model.get_text_features(
                    input_ids=tokens["input_ids"].to(self.device),
                    attention_mask=tokens["attention_mask"].to(self.device),
                )
            )
            img = torch.nn.functional.normalize(img.float(), dim=-1)
            txt = torch.nn.functional.normalize(txt.float(), dim=-1)
            cos = (txt @ img.T).squeeze(-1).cpu().numpy()
        return CLIP_S_WEIGHT * np.maximum(cos, 0.0)

    def scores(self, candidates: Sequence[Candidate], image: Any = None) -> np.ndarray:
        return np.clip(self.clip_s([c.text for c in candidates], image), 0.0, 1.0)

    def rank(self, candidates: Sequence[Candidate], image: Any = None) -> tuple[list[Candidate], float]:
        """Like Ranker.rank, and each candidate's raw CLIP-S is kept in its evidence (``clip_s=…``)."""
        if not candidates:
            return [], 0.0
        raw = self.clip_s([c.text for c in candidates], image)
        tagged = [c.model_copy(update={"evidence": [*c.evidence, f"clip_s={s:.4f}"]}) for c, s in zip(candidates, raw)]
        return self.blend(tagged, raw)


def _pooled(out: Any) -> Any:
    # transformers 5 returns a model output whose pooler_output is the projected feature; 4.x a tensor.
    return getattr(out, "pooler_output", out)
