"""How each family's tower + projector maps onto llama.cpp's clip model (``VisionPart.projector``).

Each function takes ``(model, config, source dir, preprocessing)`` and returns a
:class:`~edge.export.mmproj.ProjectorPlan` for the shared writer (:mod:`edge.export.mmproj`), or raises
:class:`~edge.export.mmproj.NoProjector` for a variant clip cannot run. The facts (key names, which
tensors are renamed, split, shifted or kept f32) are those of llama.cpp's converters at the installed
version: ``conversion/smolvlm.py`` (Idefics3 / SmolVLM), ``conversion/gemma.py`` (``Gemma3VisionModel``),
``conversion/qwenvl.py`` (``Qwen2VLVisionModel``) and, for LLaVA-1.5 / LLaVA-NeXT with a CLIP tower,
``tools/mtmd/legacy-models/convert_image_encoder_to_gguf.py`` (``convert_hf_to_gguf.py`` converts only
Pixtral-style LLaVA); what clip does with them is ``tools/mtmd/clip.cpp`` (``load_hparams``,
``load_tensors``) and ``models/*.cpp``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edge.export.mmproj import NoProjector, ProjectorPlan, as_f32, mapped, vision_keys

# clip's names for the activations of HF vision configs (clip.cpp load_hparams: use_gelu / use_silu, else quick GELU)
_ACTS = {"quick_gelu": None, "gelu": "gelu", "gelu_pytorch_tanh": "gelu", "silu": "silu"}


def _act(name: str) -> Any:
    if name not in _ACTS:
        raise NoProjector(f"llama.cpp's clip has no {name!r} activation for the vision tower")
    return _ACTS[name]


def _text_width(config) -> int:
    return int(config.get_text_config().hidden_size)


def _tower_keys(vc, config, pp, projector_type: str, block_count: int, act: Any, **extra) -> dict[str, Any]:
    return (
        vision_keys(
            projector_type=projector_type,
            projection_dim=_text_width(config),
            image_size=vc.image_size,
            patch_size=vc.patch_size,
            embedding_length=vc.hidden_size,
            feed_forward_length=vc.intermediate_size,
            block_count=block_count,
            head_count=vc.num_attention_heads,
            layer_norm_eps=extra.pop("eps", getattr(vc, "layer_norm_eps", 1e-5)),
            mean=pp.mean,
            std=pp.std,
            act=act,
        )
        | extra
    )


# --- LLaVA-1.5 / LLaVA-NeXT: CLIP tower, 2-layer GELU MLP ("mlp") ---------------------------------------


def llava(model, config, src: Path, pp) -> ProjectorPlan:
    """LLaVA's CLIP tower up to its deepest feature layer and the MLP projector (``mm.0``, ``mm.2``).

    clip's LLaVA graph (``models/llava.cpp``) runs ``block_count`` blocks and takes the listed
    ``clip.vision.feature_layer`` hidden states (index 0: the input to block 0), always drops the
    class row and never applies ``post_layernorm`` to them, so the tower is written up to
    ``max(feature layers)`` without it, as the legacy converter does."""
    import gguf

    vc = config.vision_config
    if vc.model_type != "clip_vision_model":
        raise NoProjector(f"llama.cpp's LLaVA projector needs a CLIP tower, not {vc.model_type}")
    if config.vision_feature_select_strategy != "default":
        raise NoProjector("llama.cpp's LLaVA graph always drops the class row (select strategy 'full' is not run)")
    if getattr(config, "projector_hidden_act", "gelu") != "gelu" or not getattr(
        config, "multimodal_projector_bias", True
    ):
        raise NoProjector("llama.cpp's LLaVA projector is linear+bias, GELU, linear+bias")
    layers = config.vision_feature_layer
    layers = [layers] if isinstance(layers, int) else list(layers)
    n = vc.num_hidden_layers
    feature = sorted({i if i >= 0 else n + 1 + i for i in layers})
    if feature != [n + 1 + i if i < 0 else i for i in layers]:
        raise NoProjector("llama.cpp stacks feature layers in increasing order only")
    blocks = max(feature)
    tower = model.model.vision_tower.vision_model
    items = [(f"vision_tower.vision_model.{k}", v) for k, v in tower.state_dict().items()]
    keep = [(k, v) for k, v in items if _clip_block(k) is None or _clip_block(k) < blocks]
    tensors = list(mapped(keep, n, skip=("post_layernorm", "position_ids")))
    # clip.cpp's build_inp + models/llava.cpp append the class row after the patch rows (HF puts it first) and
    # add position rows 0..n in that order; rotating the table gives every patch, and the class row, its HF
    # position. clip then returns rows 1..n: HF's patches 1..n-1 exactly, and the class row's projection last.
    tensors = [(k, np.concatenate([v[1:], v[:1]]) if k == "v.position_embd.weight" else v) for k, v in tensors]
    proj = model.model.multi_modal_projector
    tensors += [("mm.0.weight", as_f32(proj.linear_1.weight)), ("mm.0.bias", as_f32(proj.linear_1.bias))]
    tensors += [("mm.2.weight", as_f32(proj.linear_2.weight)), ("mm.2.bias", as_f32(proj.linear_2.bias))]
    keys = _tower_keys(vc, config, pp, "mlp", blocks, _act(vc.hidden_act))
    keys[gguf.Keys.Clip.HAS_LLAVA_PROJECTOR] = True
    keys["clip.vision.feature_layer"] = feature
    note = (
        "clip's LLaVA graph returns HF's patch rows 1..n-1 and, last, the class row's projection instead of patch "
        "0 (llama.cpp's own converter output does the same with every position shifted); "
        "libmtmd resizes an image whole to the tower's square (padding with its own colour, its own bicubic), "
        "not CLIP's shortest-edge resize + centre crop: its pixels equal ours only for an image of exactly "
        f"{vc.image_size}x{vc.image_size}"
    )
    side = int(vc.image_size)
    return ProjectorPlan("mlp", keys, tensors, note=note, probe=(side, side), rows="cls_last")


def llava_next(model, config, src: Path, pp) -> ProjectorPlan:
    """LLaVA-NeXT: LLaVA's tower and projector, plus the anyres pinpoints, ``spatial_unpad`` and
    ``v.image_newline`` (clip.cpp reads them for the "mlp" projector)."""
    plan = llava(model, config, src, pp)
    keys = dict(plan.keys)
    keys["clip.vision.image_grid_pinpoints"] = [int(v) for hw in pp.grid_pinpoints for v in hw]
    keys["clip.vision.mm_patch_merge_type"] = "spatial_unpad"
    tensors = plan.tensors + [("v.image_newline", as_f32(model.model.image_newline))]
    note = (
        "libmtmd slices with the pinpoints but lays the tiles out without LLaVA-NeXT's unpadding and "
        "image_newline rows: only the overview tile of an image of exactly one tile's size has our pixels; "
        "use the tiles and layout of the edge runtime (or the native library) for HF-equal answers"
    )
    return ProjectorPlan("mlp", keys, tensors, note=note, probe=plan.probe, agree="first", rows="cls_last")


def _clip_block(name: str):
    parts = name.split(".")
    return int(parts[parts.index("layers") + 1]) if "layers" in parts else None


# --- Idefics3 / SmolVLM: SigLIP tower, pixel-shuffle + linear connector ("idefics3") -------------------


def idefics3(model, config, src: Path, pp) -> ProjectorPlan:
    """``SmolVLMModel`` of the converter: the SigLIP tower (post-layernorm included), the connector's
    ``modality_projection`` as ``mm.model.fc``, scale factor and the processor's longest edge;
    the embeddings stay f32."""
    import gguf

    vc = config.vision_config
    tower = model.model.vision_model
    items = [(f"model.vision_model.{k}", v) for k, v in tower.state_dict().items()]
    items += [(f"model.connector.{k}", v) for k, v in model.model.connector.state_dict().items()]
    tensors = list(mapped(items, vc.num_hidden_layers))
    # clip numbers a tile's patches 0..n-1; HF buckets fractional coordinates (SmolVLMVisionEmbeddings.forward),
    # which gives two patches one position wherever 1/side is inexact in floating point. Gathering the table
    # in HF's order makes row i of the GGUF table the row HF adds to patch i.
    order = _tile_position_ids(tower.embeddings, int(vc.image_size), int(vc.patch_size))
    tensors = [(k, v[order] if k == "v.position_embd.weight" else v) for k, v in tensors]
    keys = _tower_keys(vc, config, pp, "idefics3", vc.num_hidden_layers, _act(vc.hidden_act))
    keys[gguf.Keys.ClipVision.Projector.SCALE_FACTOR] = int(config.scale_factor)
    keys[gguf.Keys.ClipVision.PREPROC_IMAGE_SIZE] = int(pp.longest_edge)
    note = (
        "libmtmd resizes to the longest edge and the overview with its own Lanczos, as HF does with PIL's: "
        f"the grid tiles have our pixels only when no resize happens (an image of {pp.longest_edge} px on "
        "its longest side, both sides multiples of the tile); the overview tile never does"
    )
    force = {"patch_embd": "f32", "position_embd": "f32"}
    side = int(pp.longest_edge)
    return ProjectorPlan("idefics3", keys, tensors, force=force, note=note, probe=(side, side), agree="all_but_last")


def _tile_position_ids(embeddings, image_size: int, patch_size: int) -> np.ndarray:
    """The position id HF's vision embeddings give each patch of a full tile, read from the module itself
    (a hook on its position table) rather than re-derived, so any rounding HF does is what we get."""
    import torch

    seen: list = []
    hook = embeddings.position_embedding.register_forward_hook(lambda mod, args, out: seen.append(args[0]))
    side = image_size // patch_size
    try:
        with torch.no_grad():
            dtype = embeddings.patch_embedding.weight.dtype
            pixels = torch.zeros(1, 3, image_size, image_size, dtype=dtype)
            embeddings(pixels, torch.ones(1, side, side, dtype=torch.bool))
    finally:
        hook.remove()
    return seen[0].reshape(-1).cpu().numpy().astype(np.int64)


# --- Gemma 3: SigLIP tower, average pool + soft-embedding norm + projection ("gemma3") ------------------


def gemma3(model, config, src: Path, pp) -> ProjectorPlan:
    """``Gemma3VisionModel`` of the converter: the SigLIP tower, ``mm.input_projection`` (stored as HF
    keeps it, [vision, text]), ``mm.soft_emb_norm`` with Gemma's ``1 + weight`` folded in, and the
    pooling factor when it is not clip's default 4."""
    import gguf

    vc = config.vision_config
    tower = model.model.vision_tower.vision_model
    items = [(f"vision_tower.vision_model.{k}", v) for k, v in tower.state_dict().items()]
    tensors = list(mapped(items, vc.num_hidden_layers, skip=("vision_model.head.",)))
    proj = model.model.multi_modal_projector
    tensors.append(("mm.input_projection.weight", as_f32(proj.mm_input_projection_weight)))
    tensors.append(("mm.soft_emb_norm.weight", as_f32(proj.mm_soft_emb_norm.weight) + 1.0))
    keys = _tower_keys(vc, config, pp, "gemma3", vc.num_hidden_layers, _act(vc.hidden_act), eps=vc.layer_norm_eps)
    side = int(round(int(config.mm_tokens_per_image) ** 0.5))
    factor = (vc.image_size // vc.patch_size) // side
    if factor != 4:
        keys[gguf.Keys.ClipVision.Projector.SCALE_FACTOR] = int(factor)
    pas = getattr(pp, "do_pan_and_scan", False)
    note = (
        "libmtmd resizes an image whole to the tower's square with its own bilinear filter (HF: PIL bilinear)"
        + (" and has no pan-and-scan crops" if pas else "")
        + f": its pixels equal ours only for an image of exactly {vc.image_size}x{vc.image_size}"
    )
    side = int(vc.image_size)
    return ProjectorPlan("gemma3", keys, tensors, force={"embeddings": "f32"}, note=note, probe=(side, side))


# --- Qwen2.5-VL: windowed ViT with 2-D RoPE, 2x2 patch merger ("qwen2.5vl") -----------------------------


_CLIP_QWEN_WINDOW = 112  # px; clip.cpp's fixed window for qwen2.5vl (no GGUF key read)


def qwen2_5_vl(model, config, src: Path, pp) -> ProjectorPlan:
    """``Qwen2VLVisionModel`` of the converter: fused ``qkv`` split into q/k/v, the Conv3D patch
    embedding split into its two temporal Conv2D kernels (``v.patch_embd.weight``, ``.weight.1``),
    the window-attention pattern from ``fullatt_block_indexes`` and SiLU FFNs."""
    import gguf

    vc = config.vision_config
    if vc.temporal_patch_size != 2:
        raise NoProjector("llama.cpp's Qwen2.5-VL clip splits a temporal patch of 2 frames only")
    full = list(vc.fullatt_block_indexes)
    step = full[0] + 1
    if any(b - a != step for a, b in zip(full, full[1:])):
        raise NoProjector(f"llama.cpp needs evenly spaced full-attention blocks, not {full}")
    if vc.window_size != _CLIP_QWEN_WINDOW:
        # clip.cpp reads no window size for qwen2.5vl and attends over 112-px windows (its attn_window_size
        # default): another tower's windowed blocks would compute something else on any image over one window.
        raise NoProjector(
            f"llama.cpp's clip attends over {_CLIP_QWEN_WINDOW}-px windows for Qwen2.5-VL; this tower's are "
            f"{vc.window_size} px"
        )
    tensors = []
    for name, t in model.model.visual.state_dict().items():
        hf = f"visual.{name}"
        if ".qkv." in hf:
            q, k, v = t.chunk(3, dim=0)
            for part, piece in (("q", q), ("k", k), ("v", v)):
                tensors += list(mapped([(hf.replace("qkv", part), piece)], vc.depth))
        elif hf == "visual.patch_embed.proj.weight":
            tensors.append(("v.patch_embd.weight", as_f32(t[:, :, 0])))
            tensors.append(("v.patch_embd.weight.1", as_f32(t[:, :, 1])))
        else:
            tensors += list(mapped([(hf, t)], vc.depth))
    keys = vision_keys(
        projector_type=gguf.VisionProjectorType.QWEN25VL,
        projection_dim=_text_width(config),
        image_size=getattr(vc, "image_size", 560),  # not in Qwen2.5-VL's config; the converter's default
        patch_size=vc.patch_size,
        embedding_length=vc.hidden_size,
        feed_forward_length=vc.intermediate_size,
        block_count=vc.depth,
        head_count=vc.num_heads,
        layer_norm_eps=float(getattr(config.get_text_config(), "rms_norm_eps", 1e-6)),
        mean=pp.mean,
        std=pp.std,
        act="silu",
    )
    keys[gguf.Keys.ClipVision.N_WA_PATTERN] = int(step)
    keys[gguf.Keys.ClipVision.SPATIAL_MERGE_SIZE] = int(vc.spatial_merge_size)
    note = (
        "libmtmd resizes to multiples of 2x the patch within its own pixel limits (bicubic); an image whose "
        "sides are already such multiples and within both limits has our pixels."
    )
    force = {"patch_embd": "f16", "position_embd": "f32"}
    side = 4 * vc.patch_size * vc.spatial_merge_size  # 16 merged rows: within both sides' limits, one window
    return ProjectorPlan(gguf.VisionProjectorType.QWEN25VL, keys, tensors, force=force, note=note, probe=(side, side))
