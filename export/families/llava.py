"""LLaVA (transformers ``LlavaForConditionalGeneration``): CLIP tower, feature layer and
select strategy, MLP projector, Llama-architecture LLM. Images use LLaVA-1.5's CLIP
preprocessing (shortest-edge resize, centre crop)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from edge.errors import ExportError
from edge.export import mmproj_maps
from edge.export.llm_llama import LLAMA
from edge.export.registry import FamilySpec, VisionPart
from edge.manifest import ImagePreprocess, PromptLayout

# PIL's resample codes as HF processor configs store them.
RESAMPLE_NAMES = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}


class LlavaVision(torch.nn.Module):
    """pixel_values -> projected image features, the computation of ``get_image_features``
    written without its per-image list (which the tracer would freeze to one image)."""

    def __init__(self, model) -> None:
        super().__init__()
        self.tower = model.model.vision_tower
        self.projector = model.model.multi_modal_projector
        self.layer = model.config.vision_feature_layer
        self.drop_cls = model.config.vision_feature_select_strategy == "default"

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        hidden = self.tower(pixel_values, output_hidden_states=True).hidden_states
        layers = [self.layer] if isinstance(self.layer, int) else list(self.layer)
        feats = [hidden[i][:, 1:] if self.drop_cls else hidden[i] for i in layers]
        return self.projector(torch.cat(feats, dim=-1))


def reference_features(model, pixel_values: torch.Tensor) -> torch.Tensor:
    """transformers' own ``get_image_features``, stacked: the parity reference."""
    cfg = model.config
    feats = model.get_image_features(
        pixel_values=pixel_values,
        vision_feature_layer=cfg.vision_feature_layer,
        vision_feature_select_strategy=cfg.vision_feature_select_strategy,
    )
    return torch.stack(list(feats))


def read_processor_config(src: Path, accepted: tuple[str, ...]) -> dict:
    """``preprocessor_config.json`` of a checkpoint whose image processor is one of ``accepted``."""
    path = src / "preprocessor_config.json"
    if not path.is_file():
        raise ExportError(f"{src} has no preprocessor_config.json (the image processor settings)")
    pc = json.loads(path.read_text(encoding="utf-8"))
    kind = pc.get("image_processor_type", accepted[0])
    if kind not in accepted:
        raise ExportError(f"image processor {kind} is not supported for this family yet")
    return pc


def clip_params(pc: dict, scheme: str, image_size: int) -> ImagePreprocess:
    """CLIP-style settings (shortest-edge resize, centre crop, rescale, normalise) of a
    HF image processor config."""
    size = pc.get("size", {})
    shortest = size.get("shortest_edge") if isinstance(size, dict) else size
    crop = pc.get("crop_size", shortest)
    crop_h, crop_w = (crop["height"], crop["width"]) if isinstance(crop, dict) else (crop, crop)
    if not shortest:
        raise ExportError("the image processor's size must give shortest_edge")
    return ImagePreprocess(
        scheme=scheme,
        image_size=int(image_size),
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


def clip_preprocess(src: Path, cfg) -> ImagePreprocess:
    """LLaVA-1.5's CLIPImageProcessor settings."""
    pc = read_processor_config(src, ("CLIPImageProcessor", "CLIPImageProcessorFast"))
    return clip_params(pc, "clip", cfg.vision_config.image_size)


def tokens_per_image(cfg) -> int:
    """Patches of one image, plus the CLS row when the strategy keeps it ("full")."""
    vc = cfg.vision_config
    n = (vc.image_size // vc.patch_size) ** 2
    return n + (1 if cfg.vision_feature_select_strategy == "full" else 0)


def prompt_layout(cfg, vocab: list[str]) -> PromptLayout:
    """The image placeholder is the token ``config.image_token_index`` stands for."""
    idx = cfg.image_token_index
    if not 0 <= idx < len(vocab):
        raise ExportError(f"image_token_index {idx} is outside the tokenizer vocabulary")
    return PromptLayout(image_marker=vocab[idx])


def text_tensors(model):
    """The language model's tensors under LlamaForCausalLM names (shared with LLaVA-NeXT)."""
    for name, t in model.model.language_model.state_dict().items():
        yield f"model.{name}", t
    yield "lm_head.weight", model.lm_head.weight


SPEC = FamilySpec(
    name="llava",
    model_types=("llava",),
    model_class="LlavaForConditionalGeneration",
    llm=LLAMA,
    text_config=lambda cfg: cfg.text_config,
    text_tensors=text_tensors,
    vision=VisionPart(
        scheme="clip",
        module=LlavaVision,
        reference=reference_features,
        preprocess=clip_preprocess,
        tokens_per_image=tokens_per_image,
        prompt=prompt_layout,
        projector=mmproj_maps.llava,
    ),
)
