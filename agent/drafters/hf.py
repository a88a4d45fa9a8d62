"""Stage 1 with any transformers vision-language model (BLIP, GIT, Florence-2, SmolVLM, Qwen2.5-VL, PaliGemma, LLaVA…).

The model is loaded by preset name (``caption-agent models list``), hub id or local folder through ``AutoProcessor`` +
``AutoModelForImageTextToText``, the same path for every model; a preset adds its prompt per style, processor limits,
decoding defaults and dtype, and is fetched into the Hugging Face cache first (offline: read from it).

N candidates per image come from beam search or sampling; each keeps its sequence
log-probability under the model (raw logits, log-softmax, summed over the generated tokens up to the end token).
"""

from __future__ import annotations

import math
import threading
from pathlib import Path
from typing import Any, Sequence

from PIL import Image

from caption_agent._extras import require
from caption_agent.config import TransformersDrafterSettings
from caption_agent.drafters import presets as vlm_presets
from caption_agent.drafters.base import Drafter
from caption_agent.errors import BackendUnavailableError, ConfigError, UnsupportedModelError
from caption_agent.schemas import Candidate, Draft, ImageInfo

# Prompts the model families were trained with; a chat model without an entry gets CHAT_PROMPT.
DEFAULT_PROMPTS: dict[str, str] = {
    "blip": "a photography of",
    "florence2": "<CAPTION>",
    "paligemma": "caption en",
    "pix2struct": "",
    "git": "",
    "vision-encoder-decoder": "",
}
CHAT_PROMPT = "Describe this image in one short sentence."
# Keeping raw logits for N sequences costs rows x vocab x steps x 4 bytes; batches are split to stay under this.
LOGITS_BUDGET_BYTES = 1 << 30


class TransformersDrafter(Drafter):
    """N caption candidates per image from an in-process transformers VLM, batched, on CUDA when present."""

    name = "transformers"
    gives_logprobs = True
    is_vlm = True

    settings_model = TransformersDrafterSettings

    def __init__(self, settings: TransformersDrafterSettings) -> None:
        if not settings.model:
            raise ConfigError(
                "the transformers drafter needs drafter.transformers.model (a hub id or a local folder).",
                fix="set drafter.transformers.model, e.g. "
                "Salesforce/blip-image-captioning-base, or "
                "CAPTION_AGENT_DRAFTER__TRANSFORMERS__MODEL=/path/to/model.",
            )
        model_ref: str = settings.model
        self.preset = vlm_presets.find_preset(model_ref)
        if self.preset is not None:
            settings = _with_preset_defaults(settings, self.preset)
        self.settings = settings
        self._torch = torch = require("torch", "lite", "The transformers drafter")
        tf = require("transformers", "lite", "The transformers drafter")
        self.device = settings.device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.dtype = _resolve_dtype(torch, settings.dtype, self.device, self.preset.dtype if self.preset else None)
        remote = settings.trust_remote_code
        self._processor_kwargs: dict[str, Any] = {}
        if self.preset is not None:
            _check_preset_runs_here(self.preset, remote)
            model_ref = str(vlm_presets.fetch(self.preset, settings.cache_dir))
            self._processor_kwargs = dict(self.preset.processor)
        try:
            config = tf.AutoConfig.from_pretrained(model_ref, trust_remote_code=remote)
        except (OSError, ValueError) as exc:
            raise BackendUnavailableError(
                f"cannot load the config of drafter model {model_ref!r}: {_first_line(exc)}",
                fix="check drafter.transformers.model (hub id or a folder with config.json); offline, download the "
                "weights first and point drafter.transformers.model at the folder.",
            ) from exc
        self.model_type = str(getattr(config, "model_type", "?"))
        model_cls = _vlm_class(tf, config, model_ref, remote)
        self.processor = _load_processor(tf, model_ref, remote)
        self.tokenizer = getattr(self.processor, "tokenizer", None)
        try:
            self.model = model_cls.from_pretrained(model_ref, dtype=self.dtype, trust_remote_code=remote)
        except (OSError, ValueError, RuntimeError) as exc:
            raise BackendUnavailableError(
                f"cannot load the weights of drafter model {model_ref!r}: {_first_line(exc)}",
                fix="check that the folder holds the weights (model.safetensors) "
                "and that it fits in memory on the chosen device.",
            ) from exc
        self.model.to(self.device).eval()
        self.model_id = _describe(model_ref, config, self.preset)
        self.chat = bool(getattr(self.processor, "chat_template", None))
        self._fallback_prompt = CHAT_PROMPT if self.chat else DEFAULT_PROMPTS.get(self.model_type, "")
        self.prompt = vlm_presets.task_prompt(
            self.preset, settings, None, self._fallback_prompt
        )  # with no request style
        if self.tokenizer is not None and not config.is_encoder_decoder:
            self.tokenizer.padding_side = "left"  # decoder-only batches must end where generation starts
        self._stop_ids = _stop_ids(self.model, self.tokenizer, config)
        self._vocab = int(getattr(config.get_text_config(), "vocab_size", 0) or 32_000)
        self._lock = threading.Lock()  # one generate() at a time: torch modules are not re-entrant across threads

    # --- stage 1 ----------------------------------------------------------------------------------------------
    def draft(
        self, images: Sequence[Image.Image], infos: Sequence[ImageInfo], n: int, style: str | None = None
    ) -> list[Draft]:
        prompt = vlm_presets.task_prompt(self.preset, self.settings, style, self._fallback_prompt)
        k = self._returned(n)
        per_forward = max(
            1,
            min(self.settings.batch_size, LOGITS_BUDGET_BYTES // (k * self._vocab * self.settings.max_new_tokens * 4)),
        )
        drafts: list[Draft] = []
        for start in range(0, len(images), per_forward):
            chunk = [im.convert("RGB") for im in images[start : start + per_forward]]
            for info, cands in zip(infos[start : start + per_forward], self.generate(chunk, n, prompt)):
                drafts.append(Draft(image=info, candidates=cands, model_id=self.model_id))
        return drafts

    def generate(self, images: Sequence[Image.Image], n: int, prompt: str | None = None) -> list[list[Candidate]]:
        """Up to ``n`` distinct candidates per image, best (highest mean token log-probability) first, asked with
        ``prompt`` (default: the drafter's prompt without a request style)."""
        torch, k = self._torch, self._returned(n)
        inputs = self._inputs(images, prompt)
        kwargs: dict[str, Any] = {
            "max_new_tokens": self.settings.max_new_tokens,
            "num_return_sequences": k,
            "return_dict_in_generate": True,
            "output_logits": True,
        }
        if self.settings.decoding == "beam":
            kwargs.update(num_beams=k, do_sample=False)
        else:
            kwargs.update(num_beams=1, do_sample=True, temperature=self.settings.temperature, top_p=0.95, top_k=0)
        with self._lock, torch.inference_mode():
            out = self.model.generate(**inputs, **kwargs)
            tokens, logprob, counts = self._token_logprobs(out)
        texts = self.processor.batch_decode(tokens.tolist(), skip_special_tokens=True)
        results: list[list[Candidate]] = []
        for i in range(len(images)):
            rows = range(i * k, (i + 1) * k)
            results.append(
                self._candidates([texts[r] for r in rows], [logprob[r] for r in rows], [counts[r] for r in rows], n)
            )
        return results

    # --- internals ---------------------------------------------------------------------------------------------
    def _returned(self, n: int) -> int:
        # A few extra sequences absorb duplicates (different tokens that decode to the same text).
        return min(64, n + 2) if self.settings.decoding == "beam" else min(64, 2 * n)

    def _inputs(self, images: Sequence[Image.Image], prompt: str | None = None) -> dict[str, Any]:
        prompt = self.prompt if prompt is None else prompt
        if self.chat:
            messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
            text = self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
            batch = self.processor(
                images=[[im] for im in images],
                text=[text] * len(images),
                padding=True,
                return_tensors="pt",
                **self._processor_kwargs,
            )
        elif prompt:
            batch = self.processor(
                images=list(images),
                text=[prompt] * len(images),
                padding=True,
                return_tensors="pt",
                **self._processor_kwargs,
            )
        else:
            batch = self.processor(images=list(images), return_tensors="pt", **self._processor_kwargs)
        dtype = self.dtype
        return {
            key: (v.to(self.device, dtype=dtype) if v.is_floating_point() else v.to(self.device))
            if hasattr(v, "to")
            else v
            for key, v in batch.items()
        }

    def _token_logprobs(self, out: Any) -> tuple[Any, list[float], list[int]]:
        """Generated tokens per returned sequence, their summed log-probability and their count (to the end token)."""
        torch = self._torch
        beams = getattr(out, "beam_indices", None)
        steps = beams.shape[1] if beams is not None else len(out.logits)
        tokens = out.sequences[:, out.sequences.shape[1] - steps :]
        rows = tokens.shape[0]
        lp = torch.zeros(rows, steps, dtype=torch.float32, device=tokens.device)
        arange = torch.arange(rows, device=tokens.device)
        for t in range(steps):
            src = beams[:, t].clamp(min=0).long() if beams is not None else arange
            logits = out.logits[t][src].float()
            lp[:, t] = torch.log_softmax(logits, dim=-1).gather(1, tokens[:, t : t + 1]).squeeze(1)
        is_stop = torch.isin(tokens, torch.tensor(sorted(self._stop_ids), device=tokens.device, dtype=tokens.dtype))
        # A token counts if no end token came before it (the end token itself counts: the model chose to stop).
        before = torch.cumsum(is_stop.int(), dim=1) - is_stop.int()
        valid = before == 0
        if beams is not None:
            valid &= beams >= 0
        total = (lp * valid).sum(dim=1)
        kept = tokens.masked_fill(~valid | is_stop, self._pad_id())
        return kept, total.tolist(), valid.sum(dim=1).tolist()

    def _pad_id(self) -> int:
        pad = getattr(self.tokenizer, "pad_token_id", None) if self.tokenizer is not None else None
        return int(pad if pad is not None else min(self._stop_ids))

    def _candidates(self, texts: list[str], logprobs: list[float], counts: list[int], n: int) -> list[Candidate]:
        best: dict[str, Candidate] = {}
        for text, total, count in zip(texts, logprobs, counts):
            text = " ".join(text.split())
            if not text or not math.isfinite(total):
                continue
            mean = total / max(1, count)
            cand = Candidate(
                text=text[0].upper() + text[1:],
                drafter=self.name,
                score=round(math.exp(mean), 6),
                logprob=round(total, 4),
                evidence=[f"vlm:{self.model_id}", f"tokens={count}", f"mean_logprob={mean:.3f}"],
            )
            key = text.lower()
            if key not in best or cand.score > best[key].score:
                best[key] = cand
        return sorted(best.values(), key=lambda c: -c.score)[:n]

    def close(self) -> None:
        self.__dict__.pop("model", None)
        if self.device.startswith("cuda"):
            self._torch.cuda.empty_cache()


class _SplitProcessor:
    """An image processor and a tokenizer saved separately (VisionEncoderDecoder checkpoints such as ViT-GPT2)."""

    chat_template = None

    def __init__(self, image_processor: Any, tokenizer: Any) -> None:
        self.image_processor, self.tokenizer = image_processor, tokenizer

    def __call__(self, images: Any, text: Any = None, return_tensors: str = "pt", **_: Any) -> Any:
        return self.image_processor(images=images, return_tensors=return_tensors)  # these models take no prompt

    def batch_decode(self, *args: Any, **kwargs: Any) -> list[str]:
        return self.tokenizer.batch_decode(*args, **kwargs)


def _load_processor(tf: Any, model_ref: str, remote: bool) -> Any:
    """AutoProcessor; when it yields only a tokenizer, the folder's image processor beside it; else a clear error."""
    try:
        processor = tf.AutoProcessor.from_pretrained(model_ref, trust_remote_code=remote)
    except (OSError, ValueError, TypeError) as exc:
        raise BackendUnavailableError(
            f"cannot load the processor of drafter model {model_ref!r}: {_first_line(exc)}",
            fix="the model folder needs its processor files (processor_config.json or "
            "preprocessor_config.json) and its tokenizer.",
        ) from exc
    if getattr(processor, "image_processor", None) is not None:
        return processor
    if hasattr(processor, "batch_decode") and not hasattr(processor, "tokenizer"):
        try:
            return _SplitProcessor(
                tf.AutoImageProcessor.from_pretrained(model_ref, trust_remote_code=remote), processor
            )
        except (OSError, ValueError, TypeError):
            pass
    raise UnsupportedModelError(
        f"the processor of drafter model {model_ref!r} ({type(processor).__name__}) cannot take images: the folder "
        "has no image processor (preprocessor_config.json / processor_config.json); the transformers drafter "
        "needs a processor that turns images into pixel values."
    )


def _resolve_dtype(torch: Any, name: str, device: str, preferred: str | None = None) -> Any:
    if name == "auto":
        if not device.startswith("cuda"):
            return torch.float32
        if preferred == "float16" or (preferred is None and not torch.cuda.is_bf16_supported()):
            return torch.float16
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return getattr(torch, name)


def _with_preset_defaults(
    settings: TransformersDrafterSettings, preset: vlm_presets.VLMPreset
) -> TransformersDrafterSettings:
    """The preset's decoding defaults wherever the config left a decoding setting unset."""
    unset = {
        key: getattr(preset.decoding, key)
        for key in ("decoding", "max_new_tokens", "temperature")
        if key not in settings.model_fields_set
    }
    return settings.model_copy(update=unset)


def _check_preset_runs_here(preset: vlm_presets.VLMPreset, remote: bool) -> None:
    if preset.trust_remote_code and not remote:
        raise ConfigError(
            f"VLM preset {preset.name!r} runs code from its model repo ({preset.hub_id}).",
            fix="set drafter.transformers.trust_remote_code = true if you trust that repository.",
        )
    if preset.needs_torchvision:
        try:
            import torchvision  # noqa: F401 - PyPI's CUDA build fails to import beside a CPU-only torch
        except Exception as exc:  # noqa: BLE001 - ImportError or the operator-registration RuntimeError
            raise BackendUnavailableError(
                f"VLM preset {preset.name!r} ({preset.family}) needs torchvision for its processor, which does not "
                f"import here ({type(exc).__name__}).",
                fix="install a torch + torchvision pair built together (e.g. torch==2.14.1 torchvision==0.29.1; "
                "scripts/vision_venv.sh builds such a venv), or choose a preset without torchvision "
                "(`caption-agent models list`).",
            ) from exc


def _vlm_class(tf: Any, config: Any, model_ref: str, remote: bool) -> Any:
    """AutoModelForImageTextToText, or the repo's own class for remote-code VLMs; a clear error otherwise."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING

    if type(config) in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING:
        return tf.AutoModelForImageTextToText
    auto_map = getattr(config, "auto_map", None) or {}
    if remote:
        for name in ("AutoModelForImageTextToText", "AutoModelForVision2Seq", "AutoModelForCausalLM"):
            if name in auto_map and hasattr(tf, name):
                return getattr(tf, name)
    archs = ", ".join(getattr(config, "architectures", None) or []) or "no architectures listed"
    hint = " (it ships its own code: set drafter.trust_remote_code = true if you trust it)" if auto_map else ""
    raise UnsupportedModelError(
        f"drafter model {model_ref!r} is a {config.model_type!r} model ({archs}), not a vision-language model"
        f"{hint}; the transformers drafter expects an image-to-text / image-text-to-text model that "
        "AutoModelForImageTextToText can load."
    )


def _stop_ids(model: Any, tokenizer: Any, config: Any) -> set[int]:
    ids: set[int] = set()
    for value in (
        getattr(model.generation_config, "eos_token_id", None),
        getattr(tokenizer, "eos_token_id", None),
        getattr(tokenizer, "sep_token_id", None),
        getattr(config.get_text_config(), "sep_token_id", None),
    ):  # BLIP ends on [SEP]
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, (list, tuple)):
            ids.update(int(v) for v in value)
    return ids or {-1}


def _describe(model_ref: str, config: Any, preset: vlm_presets.VLMPreset | None = None) -> str:
    if preset is not None:  # fetched into the hub cache: the snapshot folder is named by its commit
        return f"{preset.name}={preset.hub_id}@{Path(model_ref).name[:12]}"
    commit = getattr(config, "_commit_hash", None)
    return f"{model_ref}@{commit[:12]}" if commit else model_ref


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
