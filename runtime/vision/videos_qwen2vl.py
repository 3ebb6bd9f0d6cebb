"""The ``qwen2vl`` video scheme (Qwen2-VL / Qwen2.5-VL): frames -> temporal groups -> one block of
merged rows with (t, h, w) M-RoPE ids.

Ports, from transformers 4.57: ``models/qwen2_vl/video_processing_qwen2_vl.py``
(``Qwen2VLVideoProcessor.sample_frames``: frame indices; ``_preprocess``: ``smart_resize``, the
fused rescale + normalise, the last frame repeated to fill the temporal patch, the patch layout
and ``video_grid_thw``), ``models/qwen2_5_vl/processing_qwen2_5_vl.py`` (``second_per_grid_ts =
temporal_patch_size / fps``, the ``<|video_pad|>`` expansion to ``video_grid_thw.prod() //
merge_size ** 2`` rows) and ``Qwen2_5_VLModel.get_rope_index`` (video rows' ids: the temporal id
``int(group * int(second_per_grid_t) * tokens_per_second)``). The resize is torchvision's on
uint8 tensors (torch's antialiased uint8 kernel, :func:`~edge.runtime.vision.resize_aa.resize_uint8`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import time
from dataclasses import dataclass
from typing import Optional

import numpy as np
from PIL import Image

from edge.errors import InputError
from edge.events import Timings
from edge.preprocess import Qwen2VLPreprocess
from edge.qwen2vl_video import Qwen2VLVideo
from edge.runtime.vision.embed_cache import EmbeddingCache
from edge.runtime.vision.image_io import load_image
from edge.runtime.vision.resize_aa import resize_uint8
from edge.runtime.vision.slice_qwen2vl import mrope_positions, patchify, plan_qwen2vl
from edge.video import Video


def sample_indices_qwen2vl(
    total: int, video_fps: float, params: Qwen2VLVideo, temporal: int, num_frames: Optional[int] = None
) -> list[int]:
    """Frame indices as ``Qwen2VLVideoProcessor.sample_frames``: ``num_frames`` rounded to a
    multiple of ``temporal`` (Python's round), else ``params.fps`` frames per second kept between
    ``min_frames`` and ``min(max_frames, total)`` (floored to ``temporal``); then
    ``arange(0, total, total / n)`` in torch's arithmetic (double steps, float32 values, truncated).

    Raises:
        InputError: no whole group of frames (``--frames 1``), or more frames than the video has
            (transformers raises there too).
    """
    if num_frames is not None:
        n = round(num_frames / temporal) * temporal
        if n == 0:
            raise InputError(
                f"--frames {num_frames} makes no whole group: this model encodes frames in groups of "
                f"{temporal} (temporal_patch_size); use --frames {temporal} or more"
            )
    else:
        cap = math.floor(min(params.max_frames, total) / temporal) * temporal
        n = min(min(max(total / video_fps * params.fps, params.min_frames), cap), total)
        n = math.floor(n / temporal) * temporal
        if n == 0:
            raise InputError(f"the video has {total} frame(s): this model needs at least {temporal}")
    if n > total:
        raise InputError(f"cannot sample {n} frames from a video of {total} (ask for fewer with --frames)")
    step = total / n
    count = math.ceil(total / step)  # torch.arange's length: ceil((end - start) / step) in double
    values = (np.arange(count, dtype=np.float64) * step).astype(np.float32)
    return values.astype(np.int32).tolist()


def sample_qwen2vl(path: str, params: Qwen2VLVideo, temporal: int, num_frames: Optional[int] = None) -> Video:
    """A :class:`Video` of the frames :func:`sample_indices_qwen2vl` picks from a file (times and
    duration are the container's, as transformers' OpenCV reader takes them)."""
    from edge.runtime.vision.video_io import VideoReader

    if num_frames is not None and (isinstance(num_frames, bool) or not isinstance(num_frames, int) or num_frames < 1):
        raise InputError(f"--frames must be a positive integer, got {num_frames!r}")
    reader = VideoReader(path)
    try:
        frames, total = [], reader.frame_count
        if total is None:  # no count in the container: decode everything, then pick
            frames = list(reader)
            total = len(frames)
        keep = set(sample_indices_qwen2vl(total, reader.fps, params, temporal, num_frames))
        picked = [f for f in (frames or reader) if f.index in keep]
    finally:
        reader.close()
    if len(picked) != len(keep):
        raise InputError(f"cannot decode the sampled frames of video {path} (got {len(picked)} of {len(keep)})")
    return Video(tuple(f.rgb for f in picked), tuple(f.t for f in picked), total / reader.fps, str(path))


def video_preprocess(image: Qwen2VLPreprocess, params: Qwen2VLVideo) -> Qwen2VLPreprocess:
    """The image scheme's geometry (patch, merge, temporal patch, windows) with the video's limits."""
    return dataclasses.replace(
        image, min_pixels=params.min_pixels, max_pixels=params.max_pixels, do_resize=params.do_resize
    )


def video_pixel_values(frames: list[Image.Image], params: Qwen2VLVideo, pp: Qwen2VLPreprocess):
    """``(plan, patches)`` of RGB frames of one size: the plan of :func:`plan_qwen2vl` for
    ``len(frames)`` frames and ``[grid_t, gh / m, gw / m, m * m, 3 * T * P * P]`` float32 patches
    (HF's ``pixel_values_videos`` once reshaped to ``[-1, 3 * T * P * P]``)."""
    sizes = {f.size for f in frames}
    if len(sizes) != 1:
        raise InputError(f"the frames of a video must share one size, got {sorted(sizes)}")
    (w, h) = sizes.pop()
    plan = plan_qwen2vl(w, h, pp, frames=len(frames))
    out = []
    for img in frames:
        arr = np.asarray(img if img.mode == "RGB" else img.convert("RGB"))
        same = (arr.shape[1], arr.shape[0]) == plan.resized  # torchvision returns an unchanged size as is
        out.append(arr if same else resize_uint8(arr, plan.resized, params.resample))
    x = np.stack(out).astype(np.float32)
    if params.do_normalize:  # BaseImageProcessorFast.rescale_and_normalize: mean and std / rescale, float32
        scale = np.float32(1.0 / params.rescale_factor if params.do_rescale else 1.0)
        x = (x - np.asarray(params.mean, np.float32) * scale) / (np.asarray(params.std, np.float32) * scale)
    elif params.do_rescale:
        x = x * np.float32(params.rescale_factor)
    return plan, patchify(np.ascontiguousarray(np.moveaxis(x, -1, -3)), pp)


def second_per_grid(video: Video, n_frames: int, params: Qwen2VLVideo, temporal: int) -> float:
    """``temporal_patch_size / fps``: ``fps`` the rate the frames were sampled at (frames over the
    video's duration, as qwen-vl-utils passes ``sample_fps`` to the processor), else ``params.fps``
    (the processor's default)."""
    fps = n_frames / video.duration if video.duration else params.fps
    return temporal / fps


@dataclass(frozen=True)
class EncodedQwenVideo:
    """A video after the vision graph: ``prefix``, one block of merged rows, ``suffix``; its ids."""

    key: str
    layout: list
    blocks: list
    positions: list  # per block: [3, rows] (t, h, w) ids relative to its first position
    info: dict  # grid, frames, second_per_grid_t (reported)

    @property
    def nbytes(self) -> int:
        return sum(b.nbytes for b in self.blocks)

    def block_key(self, index: int) -> str:
        """The content key of block ``index`` (the MediaBlock key the pipeline compares)."""
        return f"{self.key}:{index}"

    def block_positions(self, index: int) -> np.ndarray:
        """The (t, h, w) ids of block ``index``'s rows."""
        return self.positions[index]


class Qwen2VLVideoStage:
    """Videos -> :class:`EncodedQwenVideo` through the bundle's image graph, one temporal group
    per run (HF's vision attention never crosses groups). Cached by content. Not thread-safe."""

    def __init__(self, encoder, scheme, params: Qwen2VLVideo, vision_id: str) -> None:
        image = getattr(scheme, "params", None)
        if not isinstance(image, Qwen2VLPreprocess):
            raise InputError("qwen2vl video needs a bundle whose image scheme is qwen2vl")
        self.encoder, self.params = encoder, params
        self.pp = video_preprocess(image, params)
        self.cache = EmbeddingCache()
        self._vision_id = vision_id

    def sample(self, path: str, num_frames: Optional[int] = None) -> Video:
        """A file sampled as this family's processor samples it."""
        return sample_qwen2vl(path, self.params, self.pp.temporal_patch_size, num_frames)

    def encode(self, videos: list, timings: Timings) -> list[EncodedQwenVideo]:
        """Encode each :class:`Video` (or list of frames), adding to ``timings``."""
        out = []
        for src in videos:
            t = time.perf_counter()
            video = Video.of(src)
            frames = [load_image(f) for f in video.frames]
            spg = second_per_grid(video, len(frames), self.params, self.pp.temporal_patch_size)
            key = self._key(frames, spg)
            enc = self.cache.get(key)
            if enc is None:
                plan, patches = video_pixel_values(frames, self.params, self.pp)
                timings.preprocess_ms += (time.perf_counter() - t) * 1000
                t = time.perf_counter()
                embeds = self.encoder(patches)  # [grid_t, rows per group, dim]
                timings.image_encode_ms += (time.perf_counter() - t) * 1000
                timings.tiles += patches.shape[0]
                # get_rope_index: torch.as_tensor(second_per_grid_t, dtype=int64) truncates before the product
                step = float(int(spg) * self.pp.tokens_per_second)
                ids = mrope_positions(plan.grid, self.pp.merge_size, step)
                info = {"grid": list(plan.grid), "frames": len(frames), "second_per_grid_t": spg}
                block = embeds.reshape(-1, embeds.shape[-1])
                enc = EncodedQwenVideo(key, [self.params.prefix, 0, self.params.suffix], [block], [ids], info)
                self.cache.put(key, enc)
            else:
                timings.preprocess_ms += (time.perf_counter() - t) * 1000
            timings.image_tokens += sum(int(b.shape[0]) for b in enc.blocks)
            out.append(enc)
        if timings.tiles and timings.image_encode_ms:
            timings.encode_ms_per_tile = timings.image_encode_ms / timings.tiles
        return out

    def _key(self, frames: list[Image.Image], spg: float) -> str:
        h = hashlib.sha256(f"qwen2vl-video:{self._vision_id}:{spg!r}".encode())
        for f in frames:
            h.update(repr((f.size, f.mode)).encode())
            h.update(f.tobytes())
        return h.hexdigest()[:32]
