"""A tiny random Qwen2.5-VL (``Qwen2_5_VLForConditionalGeneration``) built offline from a
transformers config: windowed + full-attention vision blocks, the 2x2 patch merger, and a Qwen2
text model with M-RoPE. The tokenizer is SmolLM2's byte-level BPE (as the other tiny models)
with Qwen's vision tokens added; the chat template is Qwen's turn format reduced to what the
runtime uses (image parts as ``<|vision_start|><|image_pad|><|vision_end|>``)."""

from __future__ import annotations

import json
from pathlib import Path

from edge.export.builders.smollm2 import smollm2_tokenizer
from edge.export.builders.tiny import spread_weights
from edge.export.builders.tiny_parts import text_kwargs

QWEN_VISION_TOKENS = ("<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>")
QWEN_VL_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] %}{% if part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'video' %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}{% endfor %}{% endif %}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def tiny_qwen2_5_vl(dst: Path, seed: int = 0, patch: int = 4, window: int = 32) -> Path:
    """A random Qwen2.5-VL: 4 vision blocks (1 and 3 full attention, 0 and 2 windowed over
    ``window``-pixel windows), patch ``patch`` merged 2x2, a 2-layer Qwen2 text model (head_dim
    16, mrope_section [2, 3, 3]); images are resized to multiples of ``2 * patch`` pixels
    between 4 and 256 merged patches (min_pixels, max_pixels)."""
    import torch
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2VLImageProcessor,
    )

    tok = smollm2_tokenizer(extra_special=QWEN_VISION_TOKENS)
    ids = {t: tok.convert_tokens_to_ids(t) for t in QWEN_VISION_TOKENS}
    factor = 2 * patch
    vision = dict(
        depth=4,
        hidden_size=32,
        intermediate_size=64,
        num_heads=4,
        patch_size=patch,
        spatial_merge_size=2,
        temporal_patch_size=2,
        window_size=window,
        out_hidden_size=64,
        fullatt_block_indexes=[1, 3],
        tokens_per_second=2,
    )
    text = text_kwargs(
        tok,
        4096,
        rope_theta=10000.0,
        rope_scaling={"type": "mrope", "mrope_section": [2, 3, 3]},
        tie_word_embeddings=True,
    )
    cfg = Qwen2_5_VLConfig(
        vision_config=vision,
        text_config=text,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(cfg).eval()
    spread_weights(model, seed)
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(dst)
    sizes = dict(patch_size=patch, merge_size=2, temporal_patch_size=2)
    pixels = dict(min_pixels=factor * factor * 4, max_pixels=factor * factor * 256)
    image_processor = Qwen2VLImageProcessor(**sizes, **pixels)
    image_processor.save_pretrained(dst)  # the video processor needs torchvision, which edge does not
    # Qwen2VLVideoProcessor's settings, written as its save_pretrained writes them (its class needs torchvision):
    # smaller frames than images (min 4, max 64 merged patches), so the video limits are seen to apply
    video = dict(video_processor_type="Qwen2VLVideoProcessor", **sizes, min_pixels=factor * factor * 4)
    video.update(max_pixels=factor * factor * 64, size={"shortest_edge": factor * factor * 4}, fps=2.0)
    (dst / "video_preprocessor_config.json").write_text(json.dumps(video, indent=2))
    tok.chat_template = QWEN_VL_TEMPLATE
    tok.save_pretrained(dst)
    return dst
