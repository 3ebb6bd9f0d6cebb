"""The ``qwen2vl`` video parameters (Qwen2-VL / Qwen2.5-VL), one variant of :data:`edge.video.VideoParams`.

Kept in its own module: ``edge/video.py`` holds the :class:`~edge.video.Video` type, SmolVLM2's
``frames`` parameters and the union.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal

from edge import checks
from edge.errors import InputError
from edge.preprocess_qwen2vl import CLIP_MEAN, CLIP_STD


@dataclass(frozen=True)
class Qwen2VLVideo:
    """The ``qwen2vl`` video scheme, as ``Qwen2VLVideoProcessor`` and ``Qwen2_5_VLProcessor`` do it
    (transformers 4.57); defaults are theirs.

    Frames (all of one size) are resized with ``smart_resize`` between ``min_pixels`` and
    ``max_pixels`` (torchvision's antialiased uint8 resize), rescaled and normalised in one step
    (the fast processors' fused form), the last frame repeated to a multiple of the image
    scheme's ``temporal_patch_size``, and patchified as images are; each temporal group of two
    frames goes through the image graph once. The prompt holds ``prefix``, the video's merged rows
    (one embedding block) and ``suffix``; the rows carry (t, h, w) M-RoPE ids with
    ``t = int(group * int(second_per_grid_t) * tokens_per_second)`` (``get_rope_index``; the
    int64 cast truncates ``second_per_grid_t`` first), ``second_per_grid_t = temporal_patch_size /
    fps`` where ``fps`` is the rate the frames were sampled at (frames without a duration: ``fps``).

    Sampling a file (``Qwen2VLVideoProcessor.sample_frames``): a frame count rounded to pairs
    (``--frames``), or ``fps`` frames per second kept between ``min_frames`` and ``max_frames``.
    """

    scheme: Literal["qwen2vl"] = "qwen2vl"  # the scheme tag
    min_pixels: int = 128 * 28 * 28  # the fewest pixels of a frame after the resize (size["shortest_edge"])
    max_pixels: int = 28 * 28 * 768  # the most pixels of a frame after the resize (size["longest_edge"])
    resample: str = "bicubic"  # resize kernel (torchvision on uint8 tensors: bilinear or bicubic)
    do_resize: bool = True  # smart_resize (else frame sides must be multiples of the image factor)
    do_rescale: bool = True  # multiply the uint8 values by ``rescale_factor``
    rescale_factor: float = 1.0 / 255.0  # the rescale multiplier
    do_normalize: bool = True  # then ``(x - mean) / std`` per channel
    mean: list[float] = field(default_factory=lambda: list(CLIP_MEAN))  # per-channel mean (R, G, B)
    std: list[float] = field(default_factory=lambda: list(CLIP_STD))  # per-channel standard deviation
    fps: float = 2.0  # frames per second sampled from a file; the processor's default rate for second_per_grid_t
    min_frames: int = 4  # frames sampled by rate at least
    max_frames: int = 768  # frames sampled by rate at most
    prefix: str = "<|vision_start|>"  # text before the video's rows
    suffix: str = "<|vision_end|>"  # text after them

    def __post_init__(self) -> None:
        for name in ("min_pixels", "max_pixels", "min_frames", "max_frames"):
            checks.check_int(name, getattr(self, name))
        for name in ("do_resize", "do_rescale", "do_normalize"):
            checks.check_bool(name, getattr(self, name))
        for name in ("fps", "rescale_factor"):
            checks.check_float(name, getattr(self, name))
        checks.check_resample(self.resample)
        if self.resample not in ("bilinear", "bicubic"):
            raise InputError(f"torch's uint8 resize has bilinear and bicubic only, not {self.resample!r}")
        checks.check_mean_std(self.mean, self.std)
        if self.min_pixels > self.max_pixels:
            raise InputError(f"min_pixels {self.min_pixels} is above max_pixels {self.max_pixels}")
        if self.min_frames > self.max_frames:
            raise InputError(f"min_frames {self.min_frames} is above max_frames {self.max_frames}")

    @classmethod
    def from_processor_config(cls, d: dict) -> "Qwen2VLVideo":
        """From ``video_preprocessor_config.json`` (or, as transformers falls back,
        ``preprocessor_config.json``): ``min_pixels``/``max_pixels`` win over ``size`` as in
        ``Qwen2VLVideoProcessor.__init__``."""
        size = d.get("size") or {}
        return cls(
            min_pixels=d.get("min_pixels") or size.get("shortest_edge") or 128 * 28 * 28,
            max_pixels=d.get("max_pixels") or size.get("longest_edge") or 28 * 28 * 768,
            resample=checks.resample_name(d.get("resample", 3)),
            do_resize=d.get("do_resize", True),
            do_rescale=d.get("do_rescale", True),
            rescale_factor=float(d.get("rescale_factor", 1.0 / 255.0)),
            do_normalize=d.get("do_normalize", True),
            mean=checks.float_list(d.get("image_mean", CLIP_MEAN), "image_mean"),
            std=checks.float_list(d.get("image_std", CLIP_STD), "image_std"),
            fps=float(d.get("fps") or 2.0),
            min_frames=int(d.get("min_frames", 4)),
            max_frames=int(d.get("max_frames", 768)),
        )

    def to_dict(self) -> dict:
        """Plain JSON (for the manifest), tagged with ``"scheme": "qwen2vl"``."""
        return asdict(self)
