"""LLaVA-NeXT (transformers ``LlavaNextForConditionalGeneration``): the LLaVA tower and
projector run per anyres tile; the runtime unpads the tile features and appends the
learned ``image_newline`` row after each feature row, as ``pack_image_features`` does."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from edge.errors import ExportError
from edge.manifest import ImagePreprocess
from edge.export.families.llava import RESAMPLE_NAMES, LlavaVision, prompt_layout, tokens_per_image
from edge.export.registry import FamilySpec, VisionPart, register


def reference_features(model, pixel_values: torch.Tensor) -> torch.Tensor:
    """The tower and projector of transformers on independent tiles, as
    ``LlavaNextModel.get_image_features`` applies them before packing."""
    cfg = model.config
    hidden = model.model.vision_tower(pixel_values, output_hidden_states=True).hidden_states
    layers = [cfg.vision_feature_layer] if isinstance(cfg.vision_feature_layer, int) else cfg.vision_feature_layer
    feats = [hidden[i][:, 1:] if cfg.vision_feature_select_strategy == "default" else hidden[i] for i in layers]
    return model.model.multi_modal_projector(torch.cat(feats, dim=-1))


def _processor_config(src: Path) -> dict:
    path = src / "preprocessor_config.json"
    if not path.is_file():
        raise ExportError(f"{src} has no preprocessor_config.json (the image processor settings)")
    pc = json.loads(path.read_text(encoding="utf-8"))
    kind = pc.get("image_processor_type", "LlavaNextImageProcessor")
    if kind not in ("LlavaNextImageProcessor", "LlavaNextImageProcessorFast"):
        raise ExportError(f"image processor {kind} is not supported for the llava_next family")
    return pc


def preprocess(src: Path, cfg) -> ImagePreprocess:
    """Per-tile CLIP normalisation (the base image is shortest-edge resized and centre-cropped)."""
    pc = _processor_config(src)
    size = pc.get("size", {})
    shortest = size.get("shortest_edge") if isinstance(size, dict) else size
    crop = pc.get("crop_size", shortest)
    crop_h, crop_w = (crop["height"], crop["width"]) if isinstance(crop, dict) else (crop, crop)
    return ImagePreprocess(
        scheme="anyres",
        image_size=int(cfg.vision_config.image_size),
        shortest_edge=int(shortest),
        crop_height=int(crop_h),
        crop_width=int(crop_w),
        do_resize=bool(pc.get("do_resize", True)),
        do_center_crop=bool(pc.get("do_center_crop", True)),
        do_rescale=bool(pc.get("do_rescale", True)),
        do_normalize=bool(pc.get("do_normalize", True)),
        resample=RESAMPLE_NAMES.get(pc.get("resample", 3), "bicubic"),
        rescale_factor=float(pc.get("rescale_factor", 1 / 255)),
        mean=[float(x) for x in pc.get("image_mean", [0.0, 0.0, 0.0])],
        std=[float(x) for x in pc.get("image_std", [1.0, 1.0, 1.0])],
    )


def slicing(src: Path, cfg) -> dict:
    """Anyres parameters: the grid pinpoints and the tower's tile and patch sizes."""
    from edge.runtime.slicing_anyres import AnyresSlicing

    if cfg.vision_feature_select_strategy != "default":
        raise ExportError("llava_next with vision_feature_select_strategy 'full' is not supported yet")
    pc = _processor_config(src)
    pc.setdefault("image_grid_pinpoints", cfg.image_grid_pinpoints)
    return AnyresSlicing.from_processor_config(pc, patch_size=int(cfg.vision_config.patch_size)).to_dict()


def extras(model) -> dict:
    """The learned newline embedding appended after each row of tile features."""
    return {"image_newline": model.model.image_newline.detach().float().numpy()}


def _text_tensors(model):
    for name, t in model.model.language_model.state_dict().items():
        yield f"model.{name}", t
    yield "lm_head.weight", model.lm_head.weight


SPEC = register(
    FamilySpec(
        name="llava_next",
        model_types=("llava_next",),
        model_class="LlavaNextForConditionalGeneration",
        text_config=lambda cfg: cfg.text_config,
        text_tensors=_text_tensors,
        vision=VisionPart(
            module=LlavaVision,
            reference=reference_features,
            preprocess=preprocess,
            slicing=slicing,
            extras=extras,
            tokens_per_image=tokens_per_image,
            prompt=prompt_layout,
        ),
    )
)
