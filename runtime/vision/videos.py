"""The video stage of a request: a :class:`~edge.video.Video` -> frames -> vision graph -> layout.

The ``frames`` scheme (:class:`~edge.video.VideoFrames`, SmolVLM2) follows transformers 4.57:
pixels as ``SmolVLMVideoProcessor._preprocess`` (``resize``: longest edge to ``longest_edge`` with
``get_resize_output_image_size``, then square to ``frame_size``; then the fast processors' fused
rescale + normalise), the prompt as ``SmolVLMProcessor.expand_text_with_video_tokens``. Where one
frame's embeddings go among the image tokens is the image scheme's (its ``frame_layout`` hook), so
another family that shows video frames as images plugs in with that hook alone.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
from PIL import Image

from edge.errors import InputError
from edge.events import Timings
from edge.runtime.vision.embed_cache import EmbeddingCache
from edge.runtime.vision.image_io import load_image
from edge.runtime.vision.resize_aa import resize_uint8
from edge.runtime.vision.slice_common import Layout, merge_text, resize
from edge.runtime.vision.videos_qwen2vl import Qwen2VLVideoStage
from edge.video import Video, VideoFrames

MAX_FRAME_SIDE = 4096  # video_processing_smolvlm.MAX_IMAGE_SIZE

_ONES = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen".split()
_ONES += ["seventeen", "eighteen", "nineteen"]
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def number_words(n: int) -> str:
    """``n`` (0-999) in English words as ``num2words`` writes cardinals ("twenty-one",
    "one hundred and five"), the frame count of SmolVLM2's video intro."""
    if not 0 <= n < 1000:
        raise InputError(f"a video of {n} frames is more than this runtime lays out (at most 999)")
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("-" + _ONES[n % 10] if n % 10 else "")
    rest = n % 100
    return f"{_ONES[n // 100]} hundred" + (f" and {number_words(rest)}" if rest else "")


def first_resize_size(width: int, height: int, longest_edge: int) -> tuple[int, int]:
    """``(w, h)`` of ``video_processing_smolvlm.get_resize_output_image_size``: the longest edge to
    ``min(longest_edge, 4096)``, the other from the aspect ratio, rounded up to even."""
    side = min(MAX_FRAME_SIDE, longest_edge)
    aspect = width / height
    if width >= height:
        w, h = side, int(side / aspect)
        h += h % 2
    else:
        h, w = side, int(side * aspect)
        w += w % 2
    return max(w, 1), max(h, 1)


def frame_pixel_values(frames: list[Image.Image], params: VideoFrames) -> np.ndarray:
    """float32 ``[n, 3, S, S]`` for RGB frames: both resizes, then ``(x - mean / r) / (std / r)`` in
    float32 (``BaseImageProcessorFast._fuse_mean_std_and_rescale_factor``, ``r`` the rescale factor)."""
    side = params.frame_size
    out = []
    for img in frames:
        rgb = img if img.mode == "RGB" else img.convert("RGB")
        if params.do_resize:
            first = first_resize_size(rgb.width, rgb.height, params.longest_edge)
            out.append(_resize(_resize(np.asarray(rgb), first, params), (side, side), params))
        elif rgb.size != (side, side):
            raise InputError(f"video frames must be {side}x{side} when resizing is off, got {rgb.width}x{rgb.height}")
        else:
            out.append(np.asarray(rgb))
    x = np.stack(out).astype(np.float32)
    if params.do_normalize:
        scale = 1.0 / params.rescale_factor if params.do_rescale else 1.0
        mean = np.asarray(params.mean, np.float32) * np.float32(scale)
        std = np.asarray(params.std, np.float32) * np.float32(scale)
        x = (x - mean) / std
    elif params.do_rescale:
        x = x * np.float32(params.rescale_factor)
    return np.ascontiguousarray(np.moveaxis(x, -1, -3))


def _resize(arr: np.ndarray, size: tuple[int, int], params: VideoFrames) -> np.ndarray:
    """One resize; the same size returns the frame itself (as torchvision's ``resize_image``)."""
    if (arr.shape[1], arr.shape[0]) == tuple(size):
        return arr
    if params.resize_arithmetic == "torch":
        return resize_uint8(arr, size, params.resample)
    return np.asarray(resize(Image.fromarray(arr), size, params.resample))


def frame_times(video: Video, params: VideoFrames) -> tuple[list[float], int]:
    """Each frame's time (s) and the whole seconds of the video, as the processor computes them;
    frames without times are ``i / default_fps`` apart (transformers' fallback for unsampled frames)."""
    if video.timestamps is not None:
        times = [float(t) for t in video.timestamps]
    else:
        times = [i / params.default_fps for i in range(len(video.frames))]
    duration = int(video.duration) if video.duration is not None else int(times[-1])
    return times, duration


def video_layout(video: Video, params: VideoFrames, frame_layout) -> Layout:
    """The intro, each frame's ``frame_text`` + one-image layout (``frame_layout(i)``), the outro."""
    times, duration = frame_times(video, params)
    pieces: list = [
        params.intro.format(frame_count=number_words(len(times)), video_duration=str(timedelta(seconds=duration)))
    ]
    for i, t in enumerate(times):
        pieces.append(params.frame_text.format(timestamp=f"{int(t // 60):02d}:{int(t % 60):02d}"))
        pieces += frame_layout(i)
    pieces.append(params.outro)
    return merge_text(pieces)


@dataclass(frozen=True)
class EncodedVideo:
    """A video after the vision graph: its layout (text and frame indices) and one block per frame."""

    key: str
    layout: Layout
    blocks: list

    @property
    def nbytes(self) -> int:
        return sum(b.nbytes for b in self.blocks)

    def block_key(self, index: int) -> str:
        """The content key of frame ``index``'s block (the MediaBlock key the pipeline compares)."""
        return f"{self.key}:{index}"

    def block_positions(self, index: int) -> None:
        """None: frames take one position per row (the ``frames`` scheme has no multi-axis ids)."""
        return None


def video_key(frames: list[Image.Image], video: Video, vision_id: str) -> str:
    """A content key: the decoded frames, their times and the vision graph."""
    h = hashlib.sha256(vision_id.encode())
    h.update(repr((video.timestamps, video.duration)).encode())
    for f in frames:
        h.update(repr((f.size, f.mode)).encode())
        h.update(f.tobytes())
    return h.hexdigest()[:32]


class VideoStage:
    """Videos -> :class:`EncodedVideo` through a bundle's image graph and image scheme (the
    ``frames`` video scheme). Encoded videos are cached by content, so a video that stays in a
    chat's history costs no vision work on later turns. Not thread-safe."""

    def __init__(self, encoder, scheme, params: VideoFrames, vision_id: str) -> None:
        if not hasattr(scheme, "frame_layout"):
            raise InputError("this model's image scheme cannot lay out video frames")
        self.encoder, self.scheme, self.params = encoder, scheme, params
        self.cache = EmbeddingCache()
        self._vision_id = vision_id

    def encode(self, videos: list, timings: Timings) -> list[EncodedVideo]:
        """Encode each :class:`Video` (or list of frames), adding to ``timings``."""
        out = []
        for src in videos:
            t = time.perf_counter()
            video = Video.of(src)
            frames = [load_image(f) for f in video.frames]
            key = video_key(frames, video, self._vision_id)
            enc = self.cache.get(key)
            if enc is None:
                pixels = frame_pixel_values(frames, self.params)
                timings.preprocess_ms += (time.perf_counter() - t) * 1000
                t = time.perf_counter()
                embeds = self.encoder(pixels)
                timings.image_encode_ms += (time.perf_counter() - t) * 1000
                timings.tiles += pixels.shape[0]
                layout = video_layout(video, self.params, self.scheme.frame_layout)
                enc = EncodedVideo(key, layout, list(embeds))
                self.cache.put(key, enc)
            else:
                timings.preprocess_ms += (time.perf_counter() - t) * 1000
            timings.image_tokens += sum(int(e.shape[0]) for e in enc.blocks)
            out.append(enc)
        if timings.tiles and timings.image_encode_ms:
            timings.encode_ms_per_tile = timings.image_encode_ms / timings.tiles
        return out


# The video schemes by the name a manifest gives (``VisionSpec.video.scheme``), filled explicitly:
# (encoder, image scheme, video parameters, vision graph id) -> a stage with ``encode(videos, timings)``.
VIDEO_SCHEMES = {"frames": VideoStage, "qwen2vl": Qwen2VLVideoStage}


def video_stage_for(encoder, scheme, params, vision_id: str):
    """The stage of the video scheme the manifest names, or an :class:`InputError`."""
    factory = VIDEO_SCHEMES.get(params.scheme)
    if factory is None:
        raise InputError(f"this runtime cannot lay out videos of the {params.scheme!r} scheme")
    return factory(encoder, scheme, params, vision_id)


def sample_video(path: str, params, num_frames=None, temporal: int = 2):
    """A video file sampled as the manifest's video scheme samples it: ``frames`` (SmolVLM2) at most
    ``num_frames`` (default ``max_frames``) by :func:`~edge.runtime.vision.video_io.sample_frames`;
    ``qwen2vl`` as ``Qwen2VLVideoProcessor.sample_frames`` (``temporal``: the temporal patch size)."""
    from edge.runtime.vision.video_io import sample_frames
    from edge.runtime.vision.videos_qwen2vl import sample_qwen2vl

    if params.scheme == "qwen2vl":
        return sample_qwen2vl(path, params, temporal, num_frames)
    n = num_frames if num_frames is not None else params.max_frames
    return sample_frames(path, n, params.fps, params.skip_secs)


def sample_indices(
    total: int, video_fps: float, num_frames: int, fps: float = 0.0, skip_secs: float = 0.0
) -> list[int]:
    """Frame indices to keep, as ``SmolVLMVideoProcessor.sample_frames``: ``min(round(fps * duration),
    num_frames)`` (all ``num_frames`` when ``fps`` is 0) evenly spaced between the ends, ``skip_secs``
    skipped at both ends when the video is longer than ``2 * skip_secs + num_frames / fps``."""
    if isinstance(num_frames, bool) or not isinstance(num_frames, int) or num_frames < 1:
        raise InputError(f"the number of frames must be a positive integer, got {num_frames!r}")
    duration = total / video_fps if video_fps else 0.0
    desired = max(1, min(int(round(fps * duration)), num_frames)) if fps > 0 else num_frames
    start, end = 0, total - 1
    if fps > 0 and skip_secs > 0 and (duration - 2 * skip_secs) > (num_frames * fps):
        start, end = int(skip_secs * video_fps), int(total - skip_secs * video_fps)
    start, end = max(0, start), min(end, total - 1)
    if start >= end:
        start, end = 0, total - 1
    return sorted({int(i) for i in np.linspace(start, end, desired).astype(int)})


__all__ = [
    "VideoStage",
    "EncodedVideo",
    "video_stage_for",
    "VIDEO_SCHEMES",
    "sample_video",
    "frame_pixel_values",
    "video_layout",
    "number_words",
    "sample_indices",
]
