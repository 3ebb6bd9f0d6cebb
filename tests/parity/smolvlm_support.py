"""transformers' SmolVLM2 processing code as the reference, without torchvision (not a test module).

``transformers.models.smolvlm.processing_smolvlm`` imports its video processor module only for three
prompt constants, and that module needs ``torchvision.transforms.v2``, which has no build for the CPU
torch this project pins. So the processor module is imported for real with a stand-in for the video
module that holds exactly those constants, read from transformers' own file; the prompt expansion
(``expand_text_with_image_tokens`` / ``expand_text_with_video_tokens``), ``DEFAULT_CHAT_TEMPLATE`` and
the frame sampling (``SmolVLMVideoProcessor.sample_frames``, compiled from its source) run as
transformers wrote them. The video pixels are the one part stated here: ``SmolVLMVideoProcessor``'s
``resize`` / ``rescale_and_normalize`` with torchvision's uint8 resize spelled out as the
``torch.nn.functional.interpolate(..., antialias=True)`` call it makes.
"""

from __future__ import annotations

import ast
import functools
import importlib
import sys
import types
from pathlib import Path
from types import SimpleNamespace

import numpy as np

_VIDEO_MODULE = "transformers.models.smolvlm.video_processing_smolvlm"
_CONSTANTS = ("DEFAULT_VIDEO_INTRO", "DEFAULT_MEDIA_OUTTRO", "FRAME_TIMESTAMP_MESSAGE", "MAX_IMAGE_SIZE")


def _video_source() -> tuple[Path, ast.Module]:
    import transformers.models.smolvlm as pkg

    path = Path(pkg.__file__).parent / "video_processing_smolvlm.py"
    return path, ast.parse(path.read_text(encoding="utf-8"))


@functools.lru_cache(maxsize=1)
def processing_module():
    """``transformers.models.smolvlm.processing_smolvlm``, imported for real."""
    name = "transformers.models.smolvlm.processing_smolvlm"
    if name in sys.modules:
        return sys.modules[name]
    _, tree = _video_source()
    consts = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name) and node.targets[0].id in _CONSTANTS:
            consts[node.targets[0].id] = ast.literal_eval(node.value)
    stub = types.ModuleType(_VIDEO_MODULE)
    stub.__dict__.update(consts)
    saved = sys.modules.get(_VIDEO_MODULE)
    sys.modules[_VIDEO_MODULE] = stub
    try:
        return importlib.import_module(name)
    finally:
        if saved is None:
            sys.modules.pop(_VIDEO_MODULE, None)
        else:
            sys.modules[_VIDEO_MODULE] = saved


def _processor_self(image_seq_len: int) -> SimpleNamespace:
    """What the two expansion methods read from ``self`` (SmolVLMProcessor.__init__'s defaults)."""
    return SimpleNamespace(
        image_seq_len=image_seq_len,
        image_token="<image>",
        fake_image_token="<fake_token_around_image>",
        global_image_token="<global-img>",
        video_token="<video>",
    )


def expand_images(text: str, rows: list[int], cols: list[int], image_seq_len: int) -> str:
    mod = processing_module()
    return mod.SmolVLMProcessor.expand_text_with_image_tokens(_processor_self(image_seq_len), [text], [rows], [cols])[0]


def expand_video(text: str, n_frames: int, metadata, image_seq_len: int) -> str:
    import torch

    mod = processing_module()
    inputs = {"pixel_values": torch.zeros(1, n_frames, 3, 1, 1), "video_metadata": iter([metadata])}
    return mod.SmolVLMProcessor.expand_text_with_video_tokens(_processor_self(image_seq_len), [text], inputs)[0]


@functools.lru_cache(maxsize=1)
def sample_frames_fn():
    from typing import Optional, Union

    from transformers.video_utils import VideoMetadata

    _, tree = _video_source()
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "SmolVLMVideoProcessor")
    fn = next(n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == "sample_frames")
    scope = {"np": np, "Optional": Optional, "Union": Union, "VideoMetadata": VideoMetadata}
    exec(compile(ast.Module([fn], []), "video_processing_smolvlm.py", "exec"), scope)
    return scope["sample_frames"]


def read_video(path: str, num_frames: int, fps: float):
    """Frames and metadata as transformers decodes and samples a file for SmolVLM2
    (``video_utils.read_video_opencv`` with ``SmolVLMVideoProcessor.sample_frames``)."""
    from transformers.video_utils import read_video_opencv

    sample = sample_frames_fn()
    owner = SimpleNamespace(num_frames=num_frames, fps=fps)
    return read_video_opencv(path, lambda metadata, **kw: sample(owner, metadata, num_frames=num_frames, fps=fps))


def video_pixels(frames: np.ndarray, vp: dict) -> np.ndarray:
    """``SmolVLMVideoProcessor._preprocess`` of one video ``[n, H, W, 3]`` uint8 -> ``[n, 3, S, S]``.

    ``vp``: longest_edge, frame_size, mean, std, rescale_factor. Lanczos becomes bicubic
    (``SmolVLMVideoProcessor.resize``); torchvision's ``resize_image`` runs uint8 bicubic natively on
    the CPU, i.e. ``interpolate(antialias=True)`` on the uint8 tensor, and returns the input at the
    same size."""
    import torch

    video = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).contiguous()
    h, w = video.shape[-2:]
    side = min(4096, vp["longest_edge"])
    aspect = w / h
    if w >= h:
        nw, nh = side, int(side / aspect)
        nh += nh % 2
    else:
        nh, nw = side, int(side * aspect)
        nw += nw % 2
    for size in ((max(nh, 1), max(nw, 1)), (vp["frame_size"], vp["frame_size"])):
        if tuple(video.shape[-2:]) != size:
            video = torch.nn.functional.interpolate(
                video, size=size, mode="bicubic", antialias=True, align_corners=False
            )
    mean = torch.tensor(vp["mean"]) * (1.0 / vp["rescale_factor"])
    std = torch.tensor(vp["std"]) * (1.0 / vp["rescale_factor"])
    x = video.to(torch.float32)
    x = (x - mean[None, :, None, None]) / std[None, :, None, None]
    return x.numpy()
