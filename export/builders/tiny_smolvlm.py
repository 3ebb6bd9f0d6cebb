"""A tiny random SmolVLM2 (``SmolVLMForConditionalGeneration``) checkpoint, built offline.

transformers' ``SmolVLMProcessor`` cannot be imported without torchvision (its module imports the
video processor, which needs ``torchvision.transforms.v2``), and no torchvision build matches the
CPU torch this project pins, so the processor files are written as a SmolVLM2 checkpoint has them:
``preprocessor_config.json`` from ``SmolVLMImageProcessor`` itself plus its ``video_sampling``,
``processor_config.json`` (``image_seq_len``) and the chat template.
"""

from __future__ import annotations

import json
from pathlib import Path

from edge.export.builders.smollm2 import IDEFICS3_TOKENS, SMOLVLM_TEMPLATE, smollm2_tokenizer
from edge.export.builders.tiny_parts import idefics3_image_kwargs, save_idefics3_like, siglip_kwargs, text_kwargs


def tiny_smolvlm(
    dst: Path,
    seed: int = 0,
    tile: int = 32,
    patch: int = 4,
    scale: int = 2,
    max_tiles_side: int = 3,
    max_frames: int = 8,
) -> Path:
    """A random SmolVLM2: SigLIP-like tower, pixel-shuffle connector, 2-layer Llama, SmolLM2's tokenizer;
    image splitting up to ``max_tiles_side`` tiles a side, videos of up to ``max_frames`` frames."""
    from transformers import (
        LlamaConfig,
        SmolVLMConfig,
        SmolVLMForConditionalGeneration,
        SmolVLMImageProcessor,
        SmolVLMVisionConfig,
    )

    tok = smollm2_tokenizer(extra_special=IDEFICS3_TOKENS)
    vision = SmolVLMVisionConfig(**siglip_kwargs(tile, patch)).to_dict()
    text = LlamaConfig(**text_kwargs(tok, 4096)).to_dict()
    save_idefics3_like(dst, tok, SmolVLMConfig, SmolVLMForConditionalGeneration, vision, text, scale, seed)
    longest = tile * max_tiles_side
    SmolVLMImageProcessor(**idefics3_image_kwargs(tile, max_tiles_side)).save_pretrained(dst)
    pc_path = Path(dst) / "preprocessor_config.json"
    pc = json.loads(pc_path.read_text(encoding="utf-8"))
    pc["processor_class"] = "SmolVLMProcessor"
    pc["video_sampling"] = {"fps": 1, "max_frames": max_frames, "video_size": {"longest_edge": longest}}
    pc_path.write_text(json.dumps(pc, indent=2) + "\n", encoding="utf-8")
    seq = (tile // patch) ** 2 // scale**2
    (Path(dst) / "processor_config.json").write_text(
        json.dumps({"image_seq_len": seq, "processor_class": "SmolVLMProcessor"}, indent=2) + "\n", encoding="utf-8"
    )
    (Path(dst) / "chat_template.json").write_text(
        json.dumps({"chat_template": SMOLVLM_TEMPLATE}) + "\n", encoding="utf-8"
    )
    tok.chat_template = SMOLVLM_TEMPLATE
    tok.save_pretrained(dst)
    return dst
