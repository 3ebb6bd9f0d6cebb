"""The vision tower + projector as a GGUF in llama.cpp's multimodal-projector ("mmproj") format.

A family says how its tower and projector map onto llama.cpp's clip model (``VisionPart.projector``:
``(model, config, source dir, preprocessing) -> ProjectorPlan``, in ``export/mmproj_*.py``); this
module is the one writer for every family. It follows the facts of llama.cpp's own converter
(``convert_hf_to_gguf.py``: ``MmprojModel`` and its per-model subclasses; the key names are
``tools/mtmd/clip-impl.h``'s) with our own code on the ``gguf`` package's :class:`gguf.GGUFWriter`:

- ``general.architecture`` "clip", ``general.type`` "mmproj", ``clip.has_vision_encoder`` and the
  ``clip.vision.*`` hyper-parameters every clip model reads (:func:`vision_keys`);
- tensor storage as the converter decides it: 1-D tensors, ``*_norm.weight``, position embeddings
  and anything not named ``.weight`` are f32; in an f16 file the other matrices are f16, unless the
  family forces a type (``ProjectorPlan.force``, e.g. Idefics3's embeddings stay f32).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional

import numpy as np

from edge.errors import ExportError

MMPROJ_FILE = "mmproj.gguf"


class NoProjector(Exception):
    """Raised by a family's ``projector`` when this checkpoint is a variant llama.cpp's clip cannot run
    (the message says why; the export goes on without a projector GGUF and the manifest says so)."""


@dataclass(frozen=True)
class ProjectorPlan:
    """What one checkpoint's mmproj GGUF holds, in the names and layout llama.cpp's clip loads."""

    projector_type: str  # ``clip.projector_type`` ("mlp", "idefics3", "gemma3", "qwen2.5vl", ...)
    keys: dict[str, Any]  # GGUF key -> value (bool, int, float, str, or a list of ints / floats)
    # (GGUF tensor name, array in torch's layout); the writer reverses dims as ggml orders them
    tensors: list[tuple[str, np.ndarray]]
    # substring of a GGUF tensor name -> "f32" / "f16": the family's storage overrides (the converter's
    # ``tensor_force_quant``); only matrices (n_dims >= 2 named .weight...) are ever stored f16
    force: dict[str, str] = field(default_factory=dict)
    # what a llama.cpp tool must know about this file (its own preprocessing, limits); for the manifest
    note: str = ""
    # the parity probe: an image (width, height) for which libmtmd's own preprocessing gives the pixels the
    # HF processor (and our scheme) gives, and which of the HF tiles then agree: "all", "first" (an overview
    # tile), "all_but_last" (the grid, not the global image)
    probe: tuple[int, int] = (0, 0)
    agree: str = "all"
    # how clip's rows of one tile line up with HF's: "same"; "cls_last": clip's LLaVA graph appends the class
    # row after the patches and returns rows 1..n, so its rows 0..n-2 are HF's patches 1..n-1 (see mmproj_maps.llava)
    rows: str = "same"


def vision_keys(
    *,
    projector_type: str,
    projection_dim: int,
    image_size: int,
    patch_size: int,
    embedding_length: int,
    feed_forward_length: int,
    block_count: int,
    head_count: int,
    layer_norm_eps: float,
    mean: Iterable[float],
    std: Iterable[float],
    act: Optional[str] = None,
) -> dict[str, Any]:
    """The keys every vision clip model reads (``clip.cpp`` ``load_hparams``; ``MmprojModel.set_gguf_parameters``).

    ``act`` is the tower's FFN activation as clip knows it: "gelu" (``clip.use_gelu``), "silu"
    (``clip.use_silu``) or None for clip's default, quick-GELU.
    """
    import gguf

    cv = gguf.Keys.ClipVision
    keys: dict[str, Any] = {
        gguf.Keys.Clip.HAS_VISION_ENCODER: True,
        gguf.Keys.Clip.PROJECTOR_TYPE: projector_type,
        cv.PROJECTION_DIM: int(projection_dim),
        cv.IMAGE_SIZE: int(image_size),
        cv.PATCH_SIZE: int(patch_size),
        cv.EMBEDDING_LENGTH: int(embedding_length),
        cv.FEED_FORWARD_LENGTH: int(feed_forward_length),
        cv.BLOCK_COUNT: int(block_count),
        cv.Attention.HEAD_COUNT: int(head_count),
        cv.Attention.LAYERNORM_EPS: float(layer_norm_eps),
        cv.IMAGE_MEAN: [float(x) for x in mean],
        cv.IMAGE_STD: [float(x) for x in std],
    }
    if act == "gelu":
        keys[cv.USE_GELU] = True
    elif act == "silu":
        keys[cv.USE_SILU] = True
    elif act is not None:
        raise NoProjector(f"llama.cpp's clip has no {act!r} activation for the vision tower")
    return keys


def mapped(prefix_tensors: Iterable[tuple[str, Any]], n_blocks: int, skip: tuple[str, ...] = ()):
    """(HF name, tensor) pairs -> (GGUF name, f32 array) through ``gguf``'s MMPROJ tensor-name map,
    which knows the HF names of the towers llama.cpp converts (``TensorNameMap``); a name it does not
    know is an error (a family must map or skip every tensor it hands over)."""
    import gguf

    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.MMPROJ, n_blocks)
    for name, t in prefix_tensors:
        if any(s in name for s in skip):
            continue
        new = names.get_name(name, try_suffixes=(".weight", ".bias"))
        if new is None:
            raise ExportError(f"the mmproj writer has no GGUF name for the tensor {name}")
        yield new, as_f32(t)


def as_f32(t: Any) -> np.ndarray:
    """A torch tensor or array as a contiguous f32 numpy array."""
    if hasattr(t, "detach"):
        t = t.detach().float().cpu().numpy()
    return np.ascontiguousarray(t, dtype=np.float32)


def storage_type(name: str, ndim: int, dtype: str, force: dict[str, str]) -> str:
    """ "f32" or "f16" for one tensor, in the order the converter decides it (``ModelBase.prepare_tensors``):
    a family override first, then 1-D / norm -> f32, then position embeddings and names not ending in
    ``.weight`` -> f32, else the file's type."""
    forced = next((v for k, v in force.items() if k in name), None)
    if ndim <= 1 or name.endswith("_norm.weight"):
        return "f32"
    if forced is not None:
        return "f16" if forced == "f16" and dtype == "f16" else "f32"
    if ".position_embd." in name or not name.endswith(".weight"):
        return "f32"
    return dtype


def write_mmproj(path: Path, plan: ProjectorPlan, dtype: str, name: str) -> dict[str, int]:
    """Write ``plan`` as an mmproj GGUF with matrices in ``dtype`` ("f32" or "f16").

    Returns the count of tensors stored per type. Raises :class:`ExportError` on a plan with a
    duplicate tensor name or a value type GGUF cannot hold.
    """
    import gguf

    if dtype not in ("f32", "f16"):
        raise ExportError(f"the mmproj GGUF is written as f32 or f16, not {dtype}")
    seen: set[str] = set()
    writer = gguf.GGUFWriter(str(path), gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.MMPROJ])
    try:
        writer.add_type(gguf.GGUFType.MMPROJ)
        writer.add_name(name)
        ftype = gguf.LlamaFileType.ALL_F32 if dtype == "f32" else gguf.LlamaFileType.MOSTLY_F16
        writer.add_file_type(int(ftype))
        for key, value in plan.keys.items():
            _add_key(writer, key, value)
        counts = {"f32": 0, "f16": 0}
        for tname, array in plan.tensors:
            if tname in seen:
                raise ExportError(f"the mmproj plan names the tensor {tname} twice")
            seen.add(tname)
            kind = storage_type(tname, array.ndim, dtype, plan.force)
            counts[kind] += 1
            writer.add_tensor(tname, array.astype(np.float16 if kind == "f16" else np.float32))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    finally:
        writer.close()
    return counts


def _add_key(writer, key: str, value: Any) -> None:
    import gguf

    if isinstance(value, bool):
        writer.add_bool(key, value)
    elif isinstance(value, int):
        writer.add_uint32(key, value)
    elif isinstance(value, float):
        writer.add_float32(key, value)
    elif isinstance(value, str):
        writer.add_string(key, value)
    elif isinstance(value, (list, tuple)) and value and all(isinstance(v, int) for v in value):
        writer.add_key_value(key, [int(v) for v in value], gguf.GGUFValueType.ARRAY, gguf.GGUFValueType.INT32)
    elif isinstance(value, (list, tuple)) and value and all(isinstance(v, float) for v in value):
        writer.add_key_value(key, [float(v) for v in value], gguf.GGUFValueType.ARRAY, gguf.GGUFValueType.FLOAT32)
    else:
        raise ExportError(f"the mmproj key {key} has a value GGUF cannot hold: {value!r}"[:200])
