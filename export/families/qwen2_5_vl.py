"""Qwen2.5-VL (transformers ``Qwen2_5_VLForConditionalGeneration``): dynamic-resolution images
(``Qwen2VLImageProcessor``), the windowed ViT + 2x2 patch merger as one ONNX graph with
precomputed window/rotary inputs (:mod:`edge.export.vision_qwen2vl`), and the Qwen2 text model
as llama.cpp's ``qwen2vl`` GGUF with M-RoPE positions (:mod:`edge.export.llm_qwen2vl`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from edge.errors import ExportError
from edge.export import mmproj_maps
from edge.export.families.llava import read_processor_config
from edge.export.llm_qwen2vl import QWEN2VL
from edge.export.registry import FamilySpec, VisionPart
from edge.manifest import PromptLayout, TensorSpec, VisionSpec
from edge.preprocess import Qwen2VLPreprocess
from edge.qwen2vl_video import Qwen2VLVideo

VISION_FILE = "vision.onnx"
# grids (patch rows, patch columns) the export checks against transformers: square, wide, tall, odd
PARITY_GRIDS = ((16, 12), (8, 8), (4, 30), (22, 14))
VISION_START, IMAGE_PAD, VISION_END = "<|vision_start|>", "<|image_pad|>", "<|vision_end|>"
VIDEO_PAD = "<|video_pad|>"


def preprocess(src: Path, cfg) -> Qwen2VLPreprocess:
    """``Qwen2VLImageProcessor`` settings, with the window and time step of the vision config."""
    pc = read_processor_config(src, ("Qwen2VLImageProcessor", "Qwen2VLImageProcessorFast"))
    vc = cfg.vision_config
    for key, ours in (("patch_size", vc.patch_size), ("merge_size", vc.spatial_merge_size)):
        if pc.get(key, ours) != ours:
            raise ExportError(f"the image processor's {key} {pc.get(key)} differs from the vision config's {ours}")
    return Qwen2VLPreprocess.from_processor_config(
        pc, window_size=vc.window_size, tokens_per_second=float(getattr(vc, "tokens_per_second", 2))
    )


def prompt_layout(cfg, vocab: list[str]) -> PromptLayout:
    """Each image is the processor's ``<|vision_start|><|image_pad|><|vision_end|>`` and each video
    ``<|vision_start|><|video_pad|><|vision_end|>``; the pad stands for the merged rows."""
    checks = ((VISION_START, cfg.vision_start_token_id), (IMAGE_PAD, cfg.image_token_id))
    for tok, idx in checks + ((VIDEO_PAD, cfg.video_token_id),):
        if not 0 <= idx < len(vocab) or vocab[idx] != tok:
            raise ExportError(f"the tokenizer does not have {tok} at id {idx}")
    return PromptLayout(
        image_marker=VISION_START + IMAGE_PAD + VISION_END,
        image_prefix=VISION_START,
        image_suffix=VISION_END,
        video_marker=VISION_START + VIDEO_PAD + VISION_END,
    )


def video_params(src: Path, cfg) -> Qwen2VLVideo:
    """``Qwen2VLVideoProcessor`` settings, read as transformers reads them: from
    ``video_preprocessor_config.json``, else from ``preprocessor_config.json``; its patch geometry
    must be the image processor's (one vision graph serves both)."""
    own = src / "video_preprocessor_config.json"
    path = own if own.is_file() else src / "preprocessor_config.json"
    pc = json.loads(path.read_text()) if path.is_file() else {}
    vc = cfg.vision_config
    for key, ours in (("patch_size", vc.patch_size), ("merge_size", vc.spatial_merge_size)):
        if pc.get(key, ours) != ours:
            raise ExportError(f"the video processor's {key} {pc.get(key)} differs from the vision config's {ours}")
    if pc.get("temporal_patch_size", vc.temporal_patch_size) != vc.temporal_patch_size:
        raise ExportError("the video processor's temporal_patch_size differs from the vision config's")
    return Qwen2VLVideo.from_processor_config(pc)


def reference(model, pixel_values: torch.Tensor, grid_thw: torch.Tensor) -> torch.Tensor:
    """transformers' own vision tower + merger (``model.visual``): the parity reference."""
    return model.model.visual(pixel_values, grid_thw)


def export_vision(tmp: Path, model, pp: Qwen2VLPreprocess, options, progress) -> tuple[VisionSpec, dict]:
    """The graph -> ``vision.onnx``, then its parity with transformers on several grids."""
    from edge.export.vision_onnx import store_weights_f16
    from edge.export.vision_qwen2vl import OUTPUT, PIXELS, Qwen25VisionGraph, export_qwen2vl_onnx

    progress.stage("Qwen2.5-VL vision tower + merger -> ONNX (dynamic patches)")
    module = Qwen25VisionGraph(model.model.visual, pp).eval()
    export_qwen2vl_onnx(module, tmp / VISION_FILE, pp, PARITY_GRIDS[0])
    if options.dtype == "f16":
        store_weights_f16(tmp / VISION_FILE)
    dim = int(model.config.vision_config.out_hidden_size)
    width = 3 * pp.temporal_patch_size * pp.patch_size**2
    spec = VisionSpec(
        file=VISION_FILE,
        dtype=options.dtype,
        input=TensorSpec(PIXELS, "float32", [-1, width]),
        output=TensorSpec(OUTPUT, "float32", [1, -1, dim]),
        tokens_per_image=0,  # varies with the image: grid_h * grid_w / merge_size ** 2 per group
        embed_dim=dim,
        preprocess=pp,
    )
    progress.stage("checking the vision graph against transformers on several grids")
    return spec, vision_parity(tmp, spec, model, options)


def vision_parity(tmp: Path, spec: VisionSpec, model, options) -> dict:
    """Max |onnxruntime - transformers| and min cosine over :data:`PARITY_GRIDS` (seeded patches)."""
    from edge.export.vision_qwen2vl import example_inputs
    from edge.runtime.vision.encoder import VisionEncoder

    encoder = VisionEncoder(tmp, spec, options.runtime.vision)
    atol = SPEC.vision.atol[options.dtype]
    diff, cos_min = 0.0, 1.0
    for i, (gh, gw) in enumerate(PARITY_GRIDS):
        px = example_inputs(spec.preprocess, gh, gw, seed=i)["pixel_values"]
        with torch.no_grad():
            ref = reference(model, torch.from_numpy(px), torch.tensor([[1, gh, gw]])).float().numpy()
        m = spec.preprocess.merge_size
        ours = encoder(px.reshape(1, gh // m, gw // m, m * m, -1))[0]
        diff = max(diff, float(np.abs(ours - ref).max()))
        cos = np.sum(ours * ref, -1) / (np.linalg.norm(ours, axis=-1) * np.linalg.norm(ref, axis=-1) + 1e-12)
        cos_min = min(cos_min, float(cos.min()))
    if not diff <= atol:
        raise ExportError(f"vision parity failed: max |onnx - torch| = {diff:.3g} > {atol:g}")
    return {
        "vision_max_abs_diff": diff,
        "vision_cosine_min": cos_min,
        "vision_atol": atol,
        "vision_grids_checked": [list(g) for g in PARITY_GRIDS],
    }


def text_tensors(model):
    """The language model's tensors under Qwen2ForCausalLM names."""
    for name, t in model.model.language_model.state_dict().items():
        yield f"model.{name}", t
    yield "lm_head.weight", model.lm_head.weight


def _not_traced(model):
    raise ExportError("the Qwen2.5-VL vision graph is exported by its own export function")


SPEC = FamilySpec(
    name="qwen2_5_vl",
    model_types=("qwen2_5_vl",),
    model_class="Qwen2_5_VLForConditionalGeneration",
    llm=QWEN2VL,
    text_config=lambda cfg: cfg.text_config,
    text_tensors=text_tensors,
    vision=VisionPart(
        scheme="qwen2vl",
        module=_not_traced,
        reference=lambda model, x: _not_traced(model),
        preprocess=preprocess,
        tokens_per_image=lambda cfg: 0,
        prompt=prompt_layout,
        export=export_vision,
        atol={"f32": 1e-4, "f16": 5e-2},
        video=video_params,
        projector=mmproj_maps.qwen2_5_vl,
    ),
)
