"""Video in the contract: the :class:`Video` input type and the :class:`VideoFrames` parameters a
bundle's manifest holds for it (``vision.video``).

A video reaches a model as frames with their times in the source. How the frames are sampled
from a file (``edge.runtime.vision.video_io.sample_frames``), how each is turned into pixels and
where their embeddings go in the prompt is the family's (``VideoFrames`` for SmolVLM2, which shows
each frame as one unsplit image between a timestamp text and the next; other families, e.g.
Qwen2.5-VL, bring their own parameters and scheme hook).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional, Union

from edge import checks
from edge.errors import InputError
from edge.qwen2vl_video import Qwen2VLVideo


@dataclass(frozen=True)
class Video:
    """A video as frames: images (paths, bytes, PIL images or ``[H, W, 3]`` uint8 arrays), in order.

    ``timestamps`` are the frames' times in the source (seconds), ``duration`` the source's
    length (seconds). Frames given without them (a list of images) have no times: a family that
    writes times into the prompt then does what its HF processor does for such frames
    (SmolVLM2: an assumed rate, :attr:`VideoFrames.default_fps`).
    """

    frames: tuple
    timestamps: Optional[tuple[float, ...]] = None
    duration: Optional[float] = None
    source: str = ""  # where the frames came from (a file name), for messages

    def __post_init__(self) -> None:
        if len(self.frames) == 0:
            raise InputError(f"a video needs at least one frame{' (' + self.source + ')' if self.source else ''}")
        if self.timestamps is not None and len(self.timestamps) != len(self.frames):
            raise InputError(f"a video has {len(self.frames)} frames but {len(self.timestamps)} timestamps")

    @classmethod
    def of(cls, frames) -> "Video":
        """``frames`` as a :class:`Video`: a Video as it is, else a sequence of images without times."""
        if isinstance(frames, Video):
            return frames
        if isinstance(frames, (str, bytes)) or not hasattr(frames, "__len__"):
            raise InputError("a video is a Video, a file (sampled by the runtime) or a list of frames")
        return cls(tuple(frames))


# video_processing_smolvlm.DEFAULT_VIDEO_INTRO (transformers 4.57)
SMOLVLM_VIDEO_INTRO = (
    "You are provided the following series of {frame_count} frames from a {video_duration} [H:MM:SS] video.\n"
)


@dataclass(frozen=True)
class VideoFrames:
    """The ``frames`` video scheme: each sampled frame goes through the image graph as one unsplit
    image, as ``SmolVLMVideoProcessor`` and ``SmolVLMProcessor.expand_text_with_video_tokens`` do
    (transformers 4.57); defaults are theirs.

    Sampling a file (``SmolVLMVideoProcessor.sample_frames``): ``min(round(fps * duration),
    max_frames)`` indices spaced evenly, skipping ``skip_secs`` at both ends when the video is long
    enough. Pixels: the longest edge resized to ``longest_edge`` (the other edge rounded up to even),
    then the frame resized to ``frame_size`` square (torchvision's antialiased uint8 resize), then
    the fused rescale + normalise of the fast HF processors. Prompt: ``intro``
    (``{frame_count}`` in English words, ``{video_duration}`` as ``H:MM:SS``), then per frame
    ``frame_text`` (``{timestamp}`` as ``MM:SS``) and the image layout of one unsplit image, then
    ``outro``.
    """

    scheme: Literal["frames"] = "frames"  # the scheme tag
    max_frames: int = 64  # frames sampled from a file at most (``video_sampling.max_frames``)
    fps: float = 1.0  # frames sampled per second of video (``video_sampling.fps``)
    skip_secs: float = 1.0  # seconds skipped at both ends of a long video
    default_fps: float = 24.0  # the rate assumed for frames given without times (HF's fallback)
    longest_edge: int = 4 * 364  # the frame's longest edge after the first resize (``video_size``)
    frame_size: int = 364  # side of the square frame the graph gets (``max_image_size``)
    resample: str = "bicubic"  # resize kernel of both resizes
    # whose arithmetic the resizes follow: "torch" (torch's antialiased uint8 interpolate, what
    # torchvision runs for the fast HF processors; bilinear or bicubic) or "pillow" (PIL's resize)
    resize_arithmetic: Literal["torch", "pillow"] = "torch"
    do_resize: bool = True  # resize at all (else the frames must already be frame_size square)
    do_rescale: bool = True  # multiply the uint8 values by ``rescale_factor``
    rescale_factor: float = 1.0 / 255.0  # the rescale multiplier
    do_normalize: bool = True  # then ``(x - mean) / std`` per channel
    mean: list[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])  # per-channel mean (R, G, B)
    std: list[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])  # per-channel standard deviation
    intro: str = SMOLVLM_VIDEO_INTRO  # before the frames ({frame_count} in words, {video_duration} as H:MM:SS)
    frame_text: str = "\nFrame from {timestamp}:"  # before each frame's image layout
    outro: str = "\n\n"  # after the last frame

    def __post_init__(self) -> None:
        for name in ("max_frames", "longest_edge", "frame_size"):
            checks.check_int(name, getattr(self, name))
        for name in ("fps", "default_fps", "rescale_factor"):
            checks.check_float(name, getattr(self, name))
        if self.skip_secs < 0:
            raise InputError(f"skip_secs must be >= 0, got {self.skip_secs}")
        for name in ("do_resize", "do_rescale", "do_normalize"):
            checks.check_bool(name, getattr(self, name))
        checks.check_resample(self.resample)
        if self.resize_arithmetic == "torch" and self.resample not in ("bilinear", "bicubic"):
            raise InputError(f"torch's uint8 resize has bilinear and bicubic only, not {self.resample!r}")
        checks.check_mean_std(self.mean, self.std)


# ``VisionSpec.video``: the family's video parameters, picked by their ``scheme`` field
# (``frames``: SmolVLM2; ``qwen2vl``: Qwen2-VL / Qwen2.5-VL, :mod:`edge.qwen2vl_video`).
VideoParams = Union[VideoFrames, Qwen2VLVideo]
