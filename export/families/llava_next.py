"""LLaVA-NeXT (transformers ``LlavaNextForConditionalGeneration``): the LLaVA tower and
projector run per anyres tile; the runtime unpads the tile features and appends the
learned ``image_newline`` row after each feature row, as ``pack_image_features`` does."""

from __future__ import annotations

from pathlib import Path

import torch

from edge.errors import ExportError
from edge.export import mmproj_maps
from edge.export.families.llava import LlavaVision, prompt_layout, read_processor_config, text_tensors, tokens_per_image
from edge.export.llm_llama import LLAMA
from edge.export.registry import FamilySpec, VisionPart
from edge.preprocess import AnyresSlicing


def reference_features(model, pixel_values: torch.Tensor) -> torch.Tensor:
    """The tower and projector of transformers on independent tiles, as
    ``LlavaNextModel.get_image_features`` applies them before packing."""
    cfg = model.config
    hidden = model.model.vision_tower(pixel_values, output_hidden_states=True).hidden_states
    layers = [cfg.vision_feature_layer] if isinstance(cfg.vision_feature_layer, int) else cfg.vision_feature_layer
    feats = [hidden[i][:, 1:] if cfg.vision_feature_select_strategy == "default" else hidden[i] for i in layers]
    return model.model.multi_modal_projector(torch.cat(feats, dim=-1))


_PROCESSORS = ("LlavaNextImageProcessor", "LlavaNextImageProcessorFast")


def preprocess(src: Path, cfg) -> AnyresSlicing:
    """Anyres parameters: the grid pinpoints, the tower's tile and patch sizes, and the per-tile
    CLIP steps (shortest-edge resize, centre crop, rescale, normalisation)."""
    if cfg.vision_feature_select_strategy != "default":
        raise ExportError("llava_next with vision_feature_select_strategy 'full' is not supported yet")
    pc = read_processor_config(src, _PROCESSORS)
    pc.setdefault("image_grid_pinpoints", cfg.image_grid_pinpoints)
    return AnyresSlicing.from_processor_config(pc, patch_size=int(cfg.vision_config.patch_size))


def extras(model) -> dict:
    """The learned newline embedding appended after each row of tile features."""
    return {"image_newline": model.model.image_newline.detach().float().numpy()}


SPEC = FamilySpec(
    name="llava_next",
    model_types=("llava_next",),
    model_class="LlavaNextForConditionalGeneration",
    llm=LLAMA,
    text_config=lambda cfg: cfg.text_config,
    text_tensors=text_tensors,
    vision=VisionPart(
        scheme="anyres",
        module=LlavaVision,
        reference=reference_features,
        preprocess=preprocess,
        extras=extras,
        tokens_per_image=tokens_per_image,
        prompt=prompt_layout,
        projector=mmproj_maps.llava_next,
    ),
)
