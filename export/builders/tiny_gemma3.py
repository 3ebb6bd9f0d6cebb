"""A tiny random-weight Gemma 3 VLM (``Gemma3ForConditionalGeneration``), built offline.

The tokenizer is SmolLM2's byte-level BPE (as the other tiny builders; Gemma's own is
SentencePiece) with Gemma 3's special tokens added, a BOS added on encoding as Gemma's
tokenizer does, and a chat template in Gemma 3's turn format (``<start_of_turn>user\\n`` ...
``<end_of_turn>\\n``, the assistant as ``model``, a system turn folded into the first user turn,
image parts as ``<start_of_image>``).
"""

from __future__ import annotations

from pathlib import Path

from edge.export.builders.smollm2 import smollm2_tokenizer
from edge.export.builders.tiny import spread_weights

BOI, IMAGE_SOFT, EOI = "<start_of_image>", "<image_soft_token>", "<end_of_image>"
GEMMA3_TOKENS = ("<bos>", "<eos>", BOI, IMAGE_SOFT, EOI, "<start_of_turn>", "<end_of_turn>")
GEMMA3_TEMPLATE = (
    "{{ bos_token }}"
    "{% if messages and messages[0]['role'] == 'system' %}"
    "{% if messages[0]['content'] is string %}{% set head = messages[0]['content'] + '\n\n' %}"
    "{% else %}{% set head = messages[0]['content'][0]['text'] + '\n\n' %}{% endif %}"
    "{% set turns = messages[1:] %}{% else %}{% set head = '' %}{% set turns = messages %}{% endif %}"
    "{% for m in turns %}"
    "{% if (m['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{{ '<start_of_turn>' + ('model' if m['role'] == 'assistant' else m['role']) + '\n' + (head if loop.first else '') }}"
    "{% if m['content'] is string %}{{ m['content'] | trim }}"
    "{% else %}{% for part in m['content'] %}{% if part['type'] == 'image' %}{{ '<start_of_image>' }}"
    "{% elif part['type'] == 'text' %}{{ part['text'] | trim }}{% endif %}{% endfor %}{% endif %}"
    "{{ '<end_of_turn>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)


def gemma3_tokenizer():
    """SmolLM2's tokenizer with Gemma 3's special tokens, ``<bos>`` added on encoding."""
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast

    base = smollm2_tokenizer(extra_special=GEMMA3_TOKENS)
    inner = base._tokenizer
    bos_id = inner.token_to_id("<bos>")
    inner.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", bos_id)])
    return PreTrainedTokenizerFast(
        tokenizer_object=inner,
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<|im_end|>",
        unk_token="<|endoftext|>",
        extra_special_tokens={"image_token": IMAGE_SOFT, "boi_token": BOI, "eoi_token": EOI},
    )


def tiny_gemma3(
    dst: Path,
    seed: int = 0,
    image_size: int = 32,
    patch_size: int = 4,
    tokens_per_image: int = 16,
    pan_and_scan: bool = False,
    sliding_window: int = 24,
) -> Path:
    """A random Gemma3ForConditionalGeneration: 2-layer SigLIP tower, pooled projector with its
    soft-embedding norm, 4-layer Gemma 3 text model (sliding/global layers alternating, a small
    sliding window, linear RoPE scaling on the global layers). ``pan_and_scan`` turns the image
    processor's pan-and-scan on, with crops from 8 pixels so small test images get them."""
    import torch
    from transformers import (
        Gemma3Config,
        Gemma3ForConditionalGeneration,
        Gemma3ImageProcessor,
        Gemma3Processor,
        SiglipVisionConfig,
    )

    tok = gemma3_tokenizer()
    vision = SiglipVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=image_size,
        patch_size=patch_size,
        vision_use_head=False,
    )
    text = _text_config(tok, sliding_window)
    cfg = Gemma3Config(
        vision_config=vision,
        text_config=text,
        mm_tokens_per_image=tokens_per_image,
        boi_token_index=tok.convert_tokens_to_ids(BOI),
        eoi_token_index=tok.convert_tokens_to_ids(EOI),
        image_token_index=tok.image_token_id,
    )
    torch.manual_seed(seed)
    model = Gemma3ForConditionalGeneration(cfg).eval()
    spread_weights(model, seed)
    _spread_norms(model, seed)
    model.generation_config.eos_token_id = [tok.eos_token_id, tok.convert_tokens_to_ids("<end_of_turn>")]
    model.save_pretrained(dst)
    image_processor = Gemma3ImageProcessor(
        size={"height": image_size, "width": image_size},
        resample=2,
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
        do_pan_and_scan=pan_and_scan or None,
        pan_and_scan_min_crop_size=8 if pan_and_scan else None,
        pan_and_scan_max_num_crops=4 if pan_and_scan else None,
        pan_and_scan_min_ratio_to_activate=1.2 if pan_and_scan else None,
    )
    processor = Gemma3Processor(
        image_processor=image_processor, tokenizer=tok, chat_template=GEMMA3_TEMPLATE, image_seq_length=tokens_per_image
    )
    processor.save_pretrained(dst)
    tok.chat_template = GEMMA3_TEMPLATE
    tok.save_pretrained(dst)
    return dst


def tiny_gemma3_text(dst: Path, seed: int = 0, sliding_window: int = 24) -> Path:
    """A random Gemma3ForCausalLM (the text model of :func:`tiny_gemma3`) with the same tokenizer."""
    import torch
    from transformers import Gemma3ForCausalLM

    tok = gemma3_tokenizer()
    torch.manual_seed(seed)
    model = Gemma3ForCausalLM(_text_config(tok, sliding_window)).eval()
    spread_weights(model, seed)
    _spread_norms(model, seed)
    model.generation_config.eos_token_id = [tok.eos_token_id, tok.convert_tokens_to_ids("<end_of_turn>")]
    model.save_pretrained(dst)
    tok.chat_template = GEMMA3_TEMPLATE
    tok.save_pretrained(dst)
    return dst


def _text_config(tok, sliding_window: int):
    from transformers import Gemma3TextConfig

    return Gemma3TextConfig(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        query_pre_attn_scalar=16,
        sliding_window=sliding_window,
        layer_types=["sliding_attention", "full_attention", "sliding_attention", "full_attention"],
        rope_theta=1_000_000.0,
        rope_local_base_freq=10_000.0,
        rope_scaling={"rope_type": "linear", "factor": 2.0},
        max_position_embeddings=2048,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )


def _spread_norms(model, seed: int) -> None:
    """Gemma's norms are ``1 + w`` with ``w = 0`` at init: give them values, so the +1 is tested."""
    import torch

    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 1 and "norm" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)
