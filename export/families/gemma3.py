"""Gemma 3 (transformers ``Gemma3ForConditionalGeneration``): a SigLIP tower at its native size,
``Gemma3MultiModalProjector`` (average pool to ``mm_tokens_per_image`` rows, the soft-embedding
RMSNorm, a projection), and a Gemma 3 text model (``llm_gemma3.GEMMA3``: llama.cpp's ``gemma3``,
image rows attended bidirectionally). Images are resized whole to the tower's size, with
pan-and-scan crops when the image processor enables them (runtime scheme ``gemma3``).

``gemma3_text`` (``Gemma3ForCausalLM``, e.g. Gemma 3 270M/1B) is the text model alone.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from edge.errors import ExportError
from edge.export import mmproj_maps
from edge.export.families.llava import read_processor_config
from edge.export.llm_gemma3 import GEMMA3
from edge.export.registry import FamilySpec, VisionPart
from edge.manifest import PromptLayout
from edge.preprocess import Gemma3Preprocess


class Gemma3Vision(torch.nn.Module):
    """pixel_values [n,3,S,S] -> projected rows [n, mm_tokens_per_image, D], the computation of
    ``Gemma3Model.get_image_features`` (tower's last hidden state, then the projector)."""

    def __init__(self, model) -> None:
        super().__init__()
        self.tower = model.model.vision_tower
        self.projector = model.model.multi_modal_projector

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.projector(self.tower(pixel_values=pixel_values).last_hidden_state)


def reference_features(model, pixel_values: torch.Tensor) -> torch.Tensor:
    """transformers' own ``get_image_features``: the parity reference."""
    return model.model.get_image_features(pixel_values)


def preprocess(src: Path, cfg) -> Gemma3Preprocess:
    """``Gemma3ImageProcessor``'s settings (pan-and-scan included) and the rows per frame."""
    pc = read_processor_config(src, ("Gemma3ImageProcessor", "Gemma3ImageProcessorFast"))
    params = Gemma3Preprocess.from_processor_config(pc, tokens_per_image=tokens_per_image(cfg))
    if params.image_size != cfg.vision_config.image_size:
        raise ExportError(
            f"the image processor's size {params.image_size} differs from the vision tower's "
            f"image_size {cfg.vision_config.image_size}"
        )
    proc = src / "processor_config.json"
    seq = json.loads(proc.read_text(encoding="utf-8")).get("image_seq_length") if proc.is_file() else None
    if seq is not None and seq != params.tokens_per_image:
        raise ExportError(
            f"the processor's image_seq_length {seq} differs from the model's mm_tokens_per_image "
            f"{params.tokens_per_image}"
        )
    return params


def tokens_per_image(cfg) -> int:
    """The projector pools each frame to ``mm_tokens_per_image`` rows."""
    return int(cfg.mm_tokens_per_image)


def prompt_layout(cfg, vocab: list[str]) -> PromptLayout:
    """The marker is the processor's placeholder, ``<start_of_image>`` (``boi_token_index``);
    the scheme expands it (``slice_gemma3.gemma3_layout``), so the layout has no prefix/suffix."""
    want = {"boi_token_index": "<start_of_image>", "eoi_token_index": "<end_of_image>"}
    for key, text in want.items():
        idx = getattr(cfg, key)
        if not 0 <= idx < len(vocab) or vocab[idx] != text:
            raise ExportError(f"{key} {idx} is not {text!r} in the tokenizer vocabulary")
    return PromptLayout(image_marker=want["boi_token_index"])


def _text_tensors(model):
    for name, t in model.model.language_model.state_dict().items():
        yield f"model.{name}", t
    yield "lm_head.weight", model.lm_head.weight


def _causal_lm_tensors(model):
    yield from model.state_dict().items()


SPEC = FamilySpec(
    name="gemma3",
    model_types=("gemma3",),
    model_class="Gemma3ForConditionalGeneration",
    llm=GEMMA3,
    text_config=lambda cfg: cfg.text_config,
    text_tensors=_text_tensors,
    vision=VisionPart(
        scheme="gemma3",
        module=Gemma3Vision,
        reference=reference_features,
        preprocess=preprocess,
        tokens_per_image=tokens_per_image,
        prompt=prompt_layout,
        projector=mmproj_maps.gemma3,
    ),
)

TEXT_SPEC = FamilySpec(
    name="gemma3_text",
    model_types=("gemma3_text",),
    model_class="Gemma3ForCausalLM",
    llm=GEMMA3,
    text_config=lambda cfg: cfg,
    text_tensors=_causal_lm_tensors,
)
