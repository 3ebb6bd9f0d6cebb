"""Shared pieces of the tiny random-weight builders: the small config shapes they all use,
and the build-and-save of LLaVA / LLaVA-NeXT checkpoints around any tokenizer and text config.

Every config here is plain data (no random numbers): the weights a builder makes depend only on
the seed it passes and on the order in which it constructs its model, which these helpers keep.
"""

from __future__ import annotations

from pathlib import Path

from edge.export.builders.smollm2 import CLIP_MEAN, CLIP_STD, IMAGE_TOKEN, LLAVA_TEMPLATE


def text_kwargs(tok, max_positions: int, kv_heads: int = 2, **extra) -> dict:
    """The 2-layer, 64-wide text-model settings of the tiny builders, with ``tok``'s vocabulary
    and special ids; ``extra`` adds or overrides settings (e.g. ``rope_theta``)."""
    return dict(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=kv_heads,
        max_position_embeddings=max_positions,
        **extra,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )


def siglip_kwargs(tile: int, patch: int) -> dict:
    """The 2-layer, 32-wide SigLIP-like vision tower of the tiny Idefics3 / SmolVLM builders."""
    return dict(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=tile,
        patch_size=patch,
    )


def clip_vision(image_size: int, patch_size: int):
    """The 3-layer, 32-wide CLIP vision tower of the tiny LLaVA builders."""
    from transformers import CLIPVisionConfig

    return CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=3,
        num_attention_heads=4,
        image_size=image_size,
        patch_size=patch_size,
        projection_dim=32,
    )


def anyres_pinpoints(tile: int) -> list[list[int]]:
    """The tiny LLaVA-NeXT anyres grid: 1x2, 2x1, 2x2, 3x1 and 1x3 tiles."""
    return [[tile, 2 * tile], [2 * tile, tile], [2 * tile, 2 * tile], [3 * tile, tile], [tile, 3 * tile]]


def save_llava(dst: Path, tok, text, seed: int, image_size: int, patch_size: int) -> Path:
    """Build a random ``LlavaForConditionalGeneration`` (CLIP tower, MLP projector, ``text``
    config) with ``seed`` and save it, its processor and ``tok`` (with LLaVA's template) to ``dst``."""
    import torch
    from transformers import CLIPImageProcessor, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor

    from edge.export.builders.tiny import spread_weights

    cfg = LlavaConfig(
        vision_config=clip_vision(image_size, patch_size),
        text_config=text,
        image_token_index=tok.convert_tokens_to_ids(IMAGE_TOKEN),
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
        projector_hidden_act="gelu",
    )
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(cfg).eval()
    spread_weights(model, seed)
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": image_size},
        crop_size={"height": image_size, "width": image_size},
        image_mean=CLIP_MEAN,
        image_std=CLIP_STD,
        resample=3,
    )
    _save_llava_files(
        dst, tok, model, LlavaProcessor(image_processor=image_processor, **_llava_processor_kwargs(tok, patch_size))
    )
    return dst


def save_llava_next(dst: Path, tok, text, seed: int, tile: int, patch: int) -> Path:
    """Build a random ``LlavaNextForConditionalGeneration`` with anyres pinpoints at a tiny scale
    (CLIP tower, ``text`` config) with ``seed`` and save it, its processor and ``tok`` to ``dst``."""
    import torch
    from transformers import (
        LlavaNextConfig,
        LlavaNextForConditionalGeneration,
        LlavaNextImageProcessor,
        LlavaNextProcessor,
    )

    from edge.export.builders.tiny import spread_weights

    pinpoints = anyres_pinpoints(tile)
    cfg = LlavaNextConfig(
        vision_config=clip_vision(tile, patch),
        text_config=text,
        image_token_index=tok.convert_tokens_to_ids(IMAGE_TOKEN),
        image_grid_pinpoints=pinpoints,
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
        projector_hidden_act="gelu",
    )
    torch.manual_seed(seed)
    model = LlavaNextForConditionalGeneration(cfg).eval()
    spread_weights(model, seed)
    # image_newline is not a >=2-D weight, so spread_weights leaves it at its init: give it its own draw
    with torch.no_grad():
        model.model.image_newline.copy_(
            torch.randn(model.model.image_newline.shape, generator=torch.Generator().manual_seed(seed))
        )
    image_processor = LlavaNextImageProcessor(
        size={"shortest_edge": tile},
        crop_size={"height": tile, "width": tile},
        image_grid_pinpoints=pinpoints,
        image_mean=CLIP_MEAN,
        image_std=CLIP_STD,
        resample=3,
    )
    _save_llava_files(
        dst, tok, model, LlavaNextProcessor(image_processor=image_processor, **_llava_processor_kwargs(tok, patch))
    )
    return dst


def save_idefics3_like(dst: Path, tok, config_cls, model_cls, vision, text, scale: int, seed: int) -> None:
    """Build a random Idefics3-shaped model (``Idefics3`` or ``SmolVLM`` classes: SigLIP-like tower
    ``vision``, pixel-shuffle connector by ``scale``, ``text`` config) with ``seed``; save it to ``dst``."""
    import torch

    from edge.export.builders.tiny import spread_weights

    cfg = config_cls(
        vision_config=vision,
        text_config=text,
        scale_factor=scale,
        image_token_id=tok.convert_tokens_to_ids(IMAGE_TOKEN),
        pad_token_id=tok.pad_token_id,
    )
    torch.manual_seed(seed)
    model = model_cls(cfg).eval()
    spread_weights(model, seed)
    model.generation_config.eos_token_id = tok.convert_tokens_to_ids("<end_of_utterance>")
    model.save_pretrained(dst)


def idefics3_image_kwargs(tile: int, max_tiles_side: int) -> dict:
    """The image-processor settings of the tiny Idefics3 / SmolVLM builders: ``tile``-pixel tiles,
    up to ``max_tiles_side`` a side, mean / std 0.5, bilinear resampling."""
    return dict(
        size={"longest_edge": tile * max_tiles_side},
        max_image_size={"longest_edge": tile},
        do_image_splitting=True,
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
        resample=1,
    )


def _llava_processor_kwargs(tok, patch_size: int) -> dict:
    return dict(
        tokenizer=tok,
        patch_size=patch_size,
        vision_feature_select_strategy="default",
        chat_template=LLAVA_TEMPLATE,
        image_token=IMAGE_TOKEN,
        num_additional_image_tokens=1,
    )


def _save_llava_files(dst: Path, tok, model, processor) -> None:
    model.generation_config.eos_token_id = tok.eos_token_id
    model.save_pretrained(dst)
    processor.save_pretrained(dst)
    tok.chat_template = LLAVA_TEMPLATE
    tok.save_pretrained(dst)
