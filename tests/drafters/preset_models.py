"""Tiny random-weight models for every VLM preset family, built from the same config classes as the real
checkpoints, saved with ``save_pretrained`` and put into a Hugging Face cache under the preset's hub id, so the
drafter loads them through the preset machinery (snapshot lookup, AutoProcessor, AutoModelForImageTextToText).

``BUILDERS`` maps a preset's ``model_type`` to its builder. Families whose processor needs torchvision are marked in
``NEEDS_TORCHVISION`` and run in the torchvision venv (scripts/vision_venv.sh).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

from tiny_models import (
    CHAT_TEMPLATE,
    build_tiny_blip,
    chat_text,
    generation_ids,
    save_tiny,
    small_text,
    small_vision,
    word_tokenizer,
)

CHAT_WORDS = ("user", "assistant", "describe", "this", "image", "one", "short", "sentence", "write", "alt", "text")
FAKE_COMMIT = "0123456789abcdef0123456789abcdef01234567"


def install_in_hub_cache(folder: Path, hub_id: str, cache_dir: Path, revision: str | None = None) -> Path:
    """Lay ``folder`` out as the hub cache does (``models--org--name/snapshots/<commit>`` + ``refs/main``)."""
    repo = cache_dir / ("models--" + hub_id.replace("/", "--"))
    commit = revision or FAKE_COMMIT
    snapshot = repo / "snapshots" / commit
    if snapshot.exists():
        shutil.rmtree(snapshot)
    shutil.copytree(folder, snapshot)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    return snapshot


def _chat_tokenizer(image: str = "<image>", extra: tuple[str, ...] = (), **named: str):
    specials = ["[PAD]", "[UNK]", "<s>", "<eot>", image, *named.pop("more_specials", "").split()]
    tok = word_tokenizer(
        specials,
        "<s> $A",
        pad_token="[PAD]",
        bos_token="<s>",
        eos_token="<eot>",
        extra=CHAT_WORDS + extra,
        extra_special_tokens={"image_token": image},
        **named,
    )
    tok.chat_template = CHAT_TEMPLATE
    return tok


# --- main venv (no torchvision) ----------------------------------------------------------------------------------


def build_florence2(path: Path, seed: int = 0) -> Path:
    """Florence-2: DaViT vision tower + BART, CLIP image processor, task tokens turned into questions."""
    from transformers import (
        BartConfig,
        CLIPImageProcessorPil,
        Florence2Config,
        Florence2ForConditionalGeneration,
        Florence2Processor,
        Florence2VisionConfig,
    )

    tok = word_tokenizer(
        ["<pad>", "[UNK]", "<s>", "</s>", "<image>"],
        "<s> $A </s>",
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        extra=("what", "does", "describe", "detail", "is", "shown", "paragraph", "image", "?"),
        extra_special_tokens={"image_token": "<image>"},
    )
    ids = tok.convert_tokens_to_ids
    vision = Florence2VisionConfig(
        depths=[1, 1],
        patch_size=[7, 3],
        patch_stride=[4, 2],
        patch_padding=[3, 1],
        patch_prenorm=[False, True],
        embed_dim=[16, 32],
        num_heads=[2, 2],
        num_groups=[2, 2],
        window_size=2,
        projection_dim=32,
        drop_path_rate=0.0,
    )
    text = BartConfig(
        vocab_size=len(tok),
        d_model=32,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        max_position_embeddings=128,
        pad_token_id=ids("<pad>"),
        bos_token_id=ids("<s>"),
        eos_token_id=ids("</s>"),
        decoder_start_token_id=ids("</s>"),
        forced_bos_token_id=None,
        forced_eos_token_id=None,
    )
    cfg = Florence2Config(vision_config=vision, text_config=text, image_token_id=ids("<image>"))
    image_processor = CLIPImageProcessorPil(
        size={"height": 32, "width": 32}, crop_size={"height": 32, "width": 32}, do_center_crop=False
    )
    image_processor.image_seq_length = 16 + 1  # (32 / 8)^2 patches after two stages, plus the pooled token
    processor = Florence2Processor(image_processor=image_processor, tokenizer=tok)
    generation = {"decoder_start_token_id": ids("</s>"), **generation_ids(tok, eos="</s>", pad="<pad>")}
    return save_tiny(path, Florence2ForConditionalGeneration, cfg, processor, seed, generation)


def build_blip2(path: Path, seed: int = 0) -> Path:
    """BLIP-2: ViT + Q-Former + OPT, image tokens (one per query) before the text prefix."""
    from transformers import (
        Blip2Config,
        Blip2ForConditionalGeneration,
        Blip2Processor,
        Blip2QFormerConfig,
        Blip2VisionConfig,
        BlipImageProcessorPil,
        OPTConfig,
    )

    tok = word_tokenizer(
        ["<pad>", "[UNK]", "</s>"],
        "</s> $A",
        pad_token="<pad>",
        bos_token="</s>",
        eos_token="</s>",
        extra=("question", "answer", "what", "product", "is", "made", "describe", "detail", "image", "shown", "it"),
    )
    queries = 4
    # As on the hub: the processor adds the <image> token to the tokenizer, so the vocabulary is read after it.
    processor = Blip2Processor(
        image_processor=BlipImageProcessorPil(size={"height": 32, "width": 32}), tokenizer=tok, num_query_tokens=queries
    )
    ids = tok.convert_tokens_to_ids
    cfg = Blip2Config(
        vision_config=Blip2VisionConfig(**small_vision()),
        qformer_config=Blip2QFormerConfig(**small_text(tok, encoder_hidden_size=32)),
        text_config=OPTConfig(
            vocab_size=len(tok),
            hidden_size=32,
            num_hidden_layers=1,
            ffn_dim=64,
            num_attention_heads=2,
            word_embed_proj_dim=32,
            max_position_embeddings=128,
            pad_token_id=ids("<pad>"),
            bos_token_id=ids("</s>"),
            eos_token_id=ids("</s>"),
        ),
        num_query_tokens=queries,
        image_token_index=ids("<image>"),
    )
    return save_tiny(path, Blip2ForConditionalGeneration, cfg, processor, seed)


def build_git(path: Path, seed: int = 0) -> Path:
    """GIT: CLIP-style vision encoder + BERT-style decoder, unconditional captions from [CLS]."""
    from transformers import CLIPImageProcessorPil, GitConfig, GitForCausalLM, GitProcessor

    tok = word_tokenizer(
        ["[PAD]", "[UNK]", "[CLS]", "[SEP]"],
        "[CLS] $A",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        bos_token="[CLS]",
        eos_token="[SEP]",
    )
    ids = tok.convert_tokens_to_ids
    cfg = GitConfig(
        vision_config=small_vision(),
        **small_text(
            tok,
            max_position_embeddings=64,
            pad_token_id=ids("[PAD]"),
            bos_token_id=ids("[CLS]"),
            eos_token_id=ids("[SEP]"),
        ),
    )
    image_processor = CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    processor = GitProcessor(image_processor=image_processor, tokenizer=tok)
    return save_tiny(path, GitForCausalLM, cfg, processor, seed)


def build_paligemma2(path: Path, seed: int = 0) -> Path:
    """PaliGemma 2: SigLIP + Gemma 2; the processor adds the <loc>/<seg> tokens, so the vocabulary is read after."""
    from transformers import (
        Gemma2Config,
        PaliGemmaConfig,
        PaliGemmaForConditionalGeneration,
        PaliGemmaProcessor,
        SiglipImageProcessorPil,
        SiglipVisionConfig,
    )

    tok = word_tokenizer(
        ["<pad>", "[UNK]", "<bos>", "<eos>", "<image>"],
        None,
        pad_token="<pad>",
        bos_token="<bos>",
        eos_token="<eos>",
        extra=("caption", "describe", "en", "\n"),
        extra_special_tokens={"image_token": "<image>"},
    )
    image_processor = SiglipImageProcessorPil(size={"height": 32, "width": 32})
    image_processor.image_seq_length = 16  # (32 / 8)^2 patches
    processor = PaliGemmaProcessor(image_processor=image_processor, tokenizer=tok)
    cfg = PaliGemmaConfig(
        vision_config=SiglipVisionConfig(**small_vision(projection_dim=64)),
        text_config=Gemma2Config(
            **chat_text(tok, "<bos>", "<eos>", "<pad>", num_key_value_heads=1, head_dim=32, max_position_embeddings=256)
        ),
        image_token_index=tok.convert_tokens_to_ids("<image>"),
        projection_dim=64,
    )
    cfg.text_config.num_image_tokens = 16
    generation = generation_ids(tok, eos="<eos>", pad="<pad>")
    return save_tiny(path, PaliGemmaForConditionalGeneration, cfg, processor, seed, generation)


def build_idefics_family(
    path: Path, seed: int, config, vision_config, model, image_processor, processor, video_processor=None
) -> Path:
    """The Idefics3 layout (also SmolVLM v1 and, with a ``video_processor``, SmolVLM2): SigLIP-style tower + pixel
    shuffle + Llama; images split into 512 px tiles as the real checkpoints do (a 32-wide tower keeps it fast)."""
    from transformers import LlamaConfig

    tile, patch, scale = 512, 32, 4
    rows = [f"<row_{i + 1}_col_{j + 1}>" for i in range(6) for j in range(6)]
    video = [] if video_processor is None else ["<video>"]
    tok = _chat_tokenizer(
        more_specials=" ".join(["<fake_token_around_image>", "<global-img>", "<end_of_utterance>", *video, *rows])
    )
    ids = tok.convert_tokens_to_ids
    cfg = config(
        vision_config=vision_config(**small_vision(image_size=tile, patch_size=patch)),
        text_config=LlamaConfig(**chat_text(tok, head_dim=32, max_position_embeddings=2048, tie_word_embeddings=False)),
        scale_factor=scale,
        image_token_id=ids("<image>"),
        pad_token_id=ids("[PAD]"),
    )
    videos = {} if video_processor is None else {"video_processor": video_processor()}
    processor = processor(
        image_processor=image_processor(size={"longest_edge": 2 * tile}, max_image_size={"longest_edge": tile}),
        tokenizer=tok,
        image_seq_len=(tile // patch) ** 2 // scale**2,
        chat_template=CHAT_TEMPLATE,
        **videos,
    )
    return save_tiny(path, model, cfg, processor, seed, generation_ids(tok))


def build_idefics3(path: Path, seed: int = 0) -> Path:
    """Idefics3 (also SmolVLM v1), with the PIL image processor."""
    from transformers import (
        Idefics3Config,
        Idefics3ForConditionalGeneration,
        Idefics3ImageProcessorPil,
        Idefics3Processor,
        Idefics3VisionConfig,
    )

    return build_idefics_family(
        path,
        seed,
        Idefics3Config,
        Idefics3VisionConfig,
        Idefics3ForConditionalGeneration,
        Idefics3ImageProcessorPil,
        Idefics3Processor,
    )


def _vision(name: str) -> Callable[[Path], Path]:
    import preset_models_vision

    return getattr(preset_models_vision, name)


BUILDERS: dict[str, Callable[[Path], Path]] = {
    "florence2": build_florence2,
    "blip": build_tiny_blip,
    "blip-2": build_blip2,
    "git": build_git,
    "paligemma": build_paligemma2,
    "idefics3": build_idefics3,
    "qwen2_5_vl": lambda path: _vision("build_qwen2_5_vl")(path),
    "qwen3_vl": lambda path: _vision("build_qwen3_vl")(path),
    "llava_onevision": lambda path: _vision("build_llava_onevision")(path),
    "smolvlm": lambda path: _vision("build_smolvlm")(path),
}
NEEDS_TORCHVISION = {"qwen2_5_vl", "qwen3_vl", "llava_onevision", "smolvlm"}


def preset_names(torchvision: bool) -> list[str]:
    """The presets whose family needs torchvision (``torchvision``) or does not, sorted."""
    from caption_agent.drafters.presets import load_presets

    return sorted(n for n, p in load_presets().items() if (p.model_type in NEEDS_TORCHVISION) == torchvision)


def build_preset_cache(root: Path, torchvision: bool) -> Path:
    """One tiny model per architecture under ``root``, installed in ``root / "hub"`` under the hub id of every
    preset that uses it: the presets whose family needs torchvision (``torchvision``) or the others."""
    from caption_agent.drafters.presets import load_presets

    cache, built = root / "hub", {}
    for preset in load_presets().values():
        if (preset.model_type in NEEDS_TORCHVISION) != torchvision:
            continue
        if preset.model_type not in built:
            built[preset.model_type] = BUILDERS[preset.model_type](root / preset.model_type)
        install_in_hub_cache(built[preset.model_type], preset.hub_id, cache, preset.revision)
    return cache


def check_preset_drafts(name: str, cache_dir: Path, images, infos) -> object:
    """Load preset ``name`` from ``cache_dir`` through the drafter and check what a real user would get."""
    import math

    from caption_agent.config import TransformersDrafterSettings
    from caption_agent.drafters.hf import TransformersDrafter
    from caption_agent.drafters.presets import get_preset

    preset = get_preset(name)
    drafter = TransformersDrafter(TransformersDrafterSettings(model=name, cache_dir=str(cache_dir), max_new_tokens=6))
    assert drafter.preset == preset and type(drafter.model).__name__ == preset.architecture
    assert drafter.model_id.startswith(f"{name}={preset.hub_id}@")
    assert drafter.prompt == preset.prompts["default"]
    assert drafter.settings.decoding == preset.decoding.decoding and drafter.settings.max_new_tokens == 6
    drafts = drafter.draft(images, infos, 2)
    assert [d.image.source for d in drafts] == [i.source for i in infos]
    for d in drafts:
        assert d.model_id == drafter.model_id and 1 <= len(d.candidates) <= 2
        assert all(c.drafter == "transformers" and math.isfinite(c.logprob) for c in d.candidates)
    return drafter
