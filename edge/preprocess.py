"""How an image becomes ``pixel_values``: ``VisionSpec.preprocess`` of the manifest.

One tagged union, :data:`VisionPreprocess`, discriminated by its ``scheme`` field:

=========  ===================  ==================================================
scheme     class                reference
=========  ===================  ==================================================
clip       ImagePreprocess      LLaVA-1.5: ``CLIPImageProcessor`` (one tile)
idefics3   Idefics3Slicing      ``Idefics3ImageProcessor`` (= SmolVLM's) splitting
anyres     AnyresSlicing        ``LlavaNextImageProcessor`` anyres tiles
uhd        UhdSlicing           LLaVA-UHD as MiniCPM-V's image processor
qwen2vl    Qwen2VLPreprocess    ``Qwen2VLImageProcessor`` dynamic resolution
gemma3     Gemma3Preprocess     ``Gemma3ImageProcessor`` (+ pan-and-scan crops)
=========  ===================  ==================================================

Each class holds *all* of its scheme's parameters (resize kernel, rescale, mean/std
included), so a bundle states each of them once. The planners and pixel work that use
them are in ``edge.runtime.vision``; the parameters are plain-JSON frozen dataclasses
with ``from_processor_config`` (a HF ``preprocessor_config.json`` dict) and
``to_dict`` / ``from_dict``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal, Optional, Union

from edge import checks
from edge.errors import InputError
from edge.preprocess_gemma3 import Gemma3Preprocess
from edge.preprocess_qwen2vl import Qwen2VLPreprocess

__all__ = [
    "ImagePreprocess",
    "Idefics3Slicing",
    "AnyresSlicing",
    "UhdSlicing",
    "Qwen2VLPreprocess",
    "Gemma3Preprocess",
    "VisionPreprocess",
    "PREPROCESS_SCHEMES",
    "LLAVA_V16_PINPOINTS",
    "CLIP_MEAN",
    "CLIP_STD",
]

LLAVA_V16_PINPOINTS = [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]]  # HF's default
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]  # OPENAI_CLIP_MEAN: HF's default
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


@dataclass(frozen=True)
class ImagePreprocess:
    """The ``clip`` scheme (LLaVA-1.5): resize the shortest edge, centre-crop, rescale,
    normalise, as ``CLIPImageProcessor`` does it; one tile per image."""

    scheme: Literal["clip"]  # the scheme tag
    image_size: int  # the vision tower's input size (pixels per side)
    shortest_edge: int  # the shortest edge after the resize
    crop_height: int  # height of the centre crop (the graph's input height)
    crop_width: int  # width of the centre crop (the graph's input width)
    do_resize: bool = True  # resize so the shortest edge is ``shortest_edge``
    do_center_crop: bool = True  # centre-crop to ``crop_height x crop_width`` (zero padded)
    do_rescale: bool = True  # multiply the uint8 values by ``rescale_factor``
    do_normalize: bool = True  # then ``(x - mean) / std`` per channel
    resample: str = "bicubic"  # resize kernel: nearest, bilinear, bicubic, lanczos, box or hamming
    rescale_factor: float = 1.0 / 255.0  # the rescale multiplier
    mean: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])  # per-channel mean (R, G, B)
    std: list[float] = field(default_factory=lambda: [1.0, 1.0, 1.0])  # per-channel standard deviation (R, G, B)

    @property
    def frame_size(self) -> Optional[tuple[int, int]]:
        """``(height, width)`` of every frame the vision graph gets."""
        return (self.crop_height, self.crop_width)


@dataclass(frozen=True)
class Idefics3Slicing:
    """The ``idefics3`` scheme: Idefics3 / SmolVLM image splitting into tiles plus a global
    image; defaults are ``Idefics3ImageProcessor``'s own.

    ``longest_edge`` is ``size["longest_edge"]``, ``tile_size`` is
    ``max_image_size["longest_edge"]`` and ``tokens_per_tile`` the processor's
    ``image_seq_len`` (``(tile_size // patch) ** 2 // scale_factor ** 2``).
    """

    scheme: Literal["idefics3"] = "idefics3"  # the scheme tag
    longest_edge: int = 4 * 364  # the image's longest edge after the first resize
    tile_size: int = 364  # side of every tile (the graph's input size)
    tokens_per_tile: int = 169  # embedding rows per tile
    resample: str = "lanczos"  # resize kernel: nearest, bilinear, bicubic, lanczos, box or hamming
    do_resize: bool = True  # resize the longest edge to ``longest_edge`` first
    do_image_splitting: bool = True  # split into tiles (else the global image alone)
    do_rescale: bool = True  # multiply the uint8 values by ``rescale_factor``
    rescale_factor: float = 1.0 / 255.0  # the rescale multiplier
    do_normalize: bool = True  # then ``(x - mean) / std`` per channel
    mean: list[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])  # per-channel mean (R, G, B)
    std: list[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])  # per-channel standard deviation (R, G, B)
    do_pad: bool = True  # pad a batch to the same tile count (HF batches only)
    fake_image_token: str = "<fake_token_around_image>"  # prompt text around each tile and the global image
    global_image_token: str = "<global-img>"  # prompt text before the global image

    def __post_init__(self) -> None:
        for name in ("longest_edge", "tile_size", "tokens_per_tile"):
            checks.check_int(name, getattr(self, name))
        for name in ("do_resize", "do_image_splitting", "do_rescale", "do_normalize", "do_pad"):
            checks.check_bool(name, getattr(self, name))
        for name in ("fake_image_token", "global_image_token"):
            checks.check_str(name, getattr(self, name))
        checks.check_resample(self.resample)
        checks.check_float("rescale_factor", self.rescale_factor)
        checks.check_mean_std(self.mean, self.std)

    @property
    def frame_size(self) -> Optional[tuple[int, int]]:
        """``(height, width)`` of every frame the vision graph gets."""
        return (self.tile_size, self.tile_size)

    @classmethod
    def from_processor_config(cls, d: dict, *, tokens_per_tile: Optional[int] = None) -> "Idefics3Slicing":
        """From ``preprocessor_config.json`` (the HF image processor's dict).

        ``tokens_per_tile`` defaults to ``d["image_seq_len"]`` (a ``processor_config.json``
        key; pass the two dicts merged, or the value) and then to HF's 169.

        Raises:
            InputError: a size without ``longest_edge`` or an invalid value.
        """

        def edge(key: str, default: int) -> int:
            value = d.get(key) or {"longest_edge": default}
            if not isinstance(value, dict) or "longest_edge" not in value:
                raise InputError(f"{key} must hold 'longest_edge', got {value!r}")
            return value["longest_edge"]

        seq = tokens_per_tile if tokens_per_tile is not None else d.get("image_seq_len", 169)
        return cls(
            longest_edge=edge("size", 4 * 364),
            tile_size=edge("max_image_size", 364),
            tokens_per_tile=seq,
            resample=checks.resample_name(d.get("resample", 1)),
            do_resize=d.get("do_resize", True),
            do_image_splitting=d.get("do_image_splitting", True),
            do_rescale=d.get("do_rescale", True),
            rescale_factor=float(d.get("rescale_factor", 1.0 / 255.0)),
            do_normalize=d.get("do_normalize", True),
            mean=checks.float_list(d.get("image_mean", [0.5, 0.5, 0.5]), "image_mean"),
            std=checks.float_list(d.get("image_std", [0.5, 0.5, 0.5]), "image_std"),
            do_pad=d.get("do_pad", True),
        )

    def to_dict(self) -> dict:
        """Plain JSON (for the manifest), tagged with ``"scheme": "idefics3"``."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Idefics3Slicing":
        """Inverse of :meth:`to_dict`. Raises :class:`InputError` on unknown keys."""
        data = {k: v for k, v in d.items() if k != "scheme"}
        try:
            return cls(**data)
        except TypeError as exc:
            raise InputError(f"bad idefics3 slicing parameters: {exc}") from None


@dataclass(frozen=True)
class AnyresSlicing:
    """The ``anyres`` scheme: LLaVA-NeXT's base image plus a grid of tiles; defaults are
    llava-v1.6's.

    ``grid_pinpoints`` are ``[height, width]`` pairs, multiples of the crop size (the
    vision tower's input size). ``patch_size`` is the vision patch: each frame gives
    ``(crop // patch_size) ** 2`` features (``vision_feature_select_strategy="default"``).
    """

    scheme: Literal["anyres"] = "anyres"  # the scheme tag
    # the resolutions [height, width] the image may be fitted into (multiples of crop_size)
    grid_pinpoints: list[list[int]] = field(default_factory=lambda: [list(p) for p in LLAVA_V16_PINPOINTS])
    shortest_edge: int = 336  # each frame's shortest edge after its resize
    crop_size: int = 336  # side of every frame (the graph's input size)
    patch_size: int = 14  # the vision tower's patch size
    resample: str = "bicubic"  # resize kernel: nearest, bilinear, bicubic, lanczos, box or hamming
    do_resize: bool = True  # resize each frame's shortest edge to ``shortest_edge``
    do_center_crop: bool = True  # centre-crop each frame to ``crop_size`` (must be true)
    do_rescale: bool = True  # multiply the uint8 values by ``rescale_factor``
    rescale_factor: float = 1.0 / 255.0  # the rescale multiplier
    do_normalize: bool = True  # then ``(x - mean) / std`` per channel
    mean: list[float] = field(default_factory=lambda: list(CLIP_MEAN))  # per-channel mean (R, G, B)
    std: list[float] = field(default_factory=lambda: list(CLIP_STD))  # per-channel standard deviation (R, G, B)

    def __post_init__(self) -> None:
        for name in ("shortest_edge", "crop_size", "patch_size"):
            checks.check_int(name, getattr(self, name))
        for name in ("do_resize", "do_center_crop", "do_rescale", "do_normalize"):
            checks.check_bool(name, getattr(self, name))
        checks.check_resample(self.resample)
        checks.check_float("rescale_factor", self.rescale_factor)
        checks.check_mean_std(self.mean, self.std)
        if self.crop_size % self.patch_size:
            raise InputError(f"crop_size {self.crop_size} is not a multiple of patch_size {self.patch_size}")
        if not isinstance(self.grid_pinpoints, list) or not self.grid_pinpoints:
            raise InputError("grid_pinpoints must be a non-empty list of [height, width] pairs")
        for pair in self.grid_pinpoints:
            if not isinstance(pair, list) or len(pair) != 2:
                raise InputError(f"grid_pinpoints entries must be [height, width], got {pair!r}")
            for v in pair:
                checks.check_int("grid pinpoint", v)
                if v % self.crop_size:
                    # divide_to_patches would make partial patches that the model's
                    # get_anyres_image_grid_shape (floor division) does not count.
                    raise InputError(f"grid pinpoint {pair} is not a multiple of crop_size {self.crop_size}")
        if not self.do_center_crop:
            raise InputError("anyres slicing needs do_center_crop: frames must all be crop_size")

    @property
    def frame_size(self) -> Optional[tuple[int, int]]:
        """``(height, width)`` of every frame the vision graph gets."""
        return (self.crop_size, self.crop_size)

    @property
    def tokens_per_tile(self) -> int:
        """Features per frame out of the vision tower + projector."""
        return (self.crop_size // self.patch_size) ** 2

    @classmethod
    def from_processor_config(cls, d: dict, *, patch_size: Optional[int] = None) -> "AnyresSlicing":
        """From ``preprocessor_config.json`` of a ``LlavaNextImageProcessor``.

        ``patch_size`` (the vision patch) defaults to ``d["patch_size"]`` (a
        ``processor_config.json`` key), then 14.

        Raises:
            InputError: a ``size`` without ``shortest_edge``, a non-square crop, or a bad value.
        """
        size = d.get("size") or {"shortest_edge": 224}
        if not isinstance(size, dict) or "shortest_edge" not in size:
            raise InputError(f"only size={{'shortest_edge': N}} is supported, got {size!r}")
        crop = d.get("crop_size") or {"height": 224, "width": 224}
        if isinstance(crop, int):
            crop = {"height": crop, "width": crop}
        if crop.get("height") != crop.get("width"):
            raise InputError(f"anyres slicing needs a square crop_size, got {crop!r}")
        return cls(
            grid_pinpoints=[list(p) for p in d.get("image_grid_pinpoints") or LLAVA_V16_PINPOINTS],
            shortest_edge=size["shortest_edge"],
            crop_size=crop["height"],
            patch_size=patch_size if patch_size is not None else d.get("patch_size", 14),
            resample=checks.resample_name(d.get("resample", 3)),
            do_resize=d.get("do_resize", True),
            do_center_crop=d.get("do_center_crop", True),
            do_rescale=d.get("do_rescale", True),
            rescale_factor=float(d.get("rescale_factor", 1.0 / 255.0)),
            do_normalize=d.get("do_normalize", True),
            mean=checks.float_list(d.get("image_mean", CLIP_MEAN), "image_mean"),
            std=checks.float_list(d.get("image_std", CLIP_STD), "image_std"),
        )

    def to_dict(self) -> dict:
        """Plain JSON (for the manifest), tagged with ``"scheme": "anyres"``."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "AnyresSlicing":
        """Inverse of :meth:`to_dict`. Raises :class:`InputError` on unknown keys."""
        try:
            return cls(**{k: v for k, v in d.items() if k != "scheme"})
        except TypeError as exc:
            raise InputError(f"bad anyres slicing parameters: {exc}") from None


@dataclass(frozen=True)
class UhdSlicing:
    """The ``uhd`` scheme: LLaVA-UHD / MiniCPM-V slicing into an overview plus slices of
    their own sizes; defaults are MiniCPM-V 2.6's processor config.

    ``tokens_per_slice`` is ``image_feature_size`` (the resampler's query count). The
    token strings are the ones MiniCPM-V's processor writes around each frame. Pixels
    are ``float32(x) / 255``, then normalised.
    """

    scheme: Literal["uhd"] = "uhd"  # the scheme tag
    scale_resolution: int = 448  # each frame holds about scale_resolution ** 2 pixels
    patch_size: int = 14  # frame sides are multiples of this
    max_slice_nums: int = 9  # the most slices of one image
    slice_mode: bool = True  # slice large images (else the overview alone)
    tokens_per_slice: int = 64  # embedding rows per frame (the resampler's query count)
    resample: str = "bicubic"  # resize kernel: nearest, bilinear, bicubic, lanczos, box or hamming
    mean: list[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])  # per-channel mean (R, G, B)
    std: list[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])  # per-channel standard deviation (R, G, B)
    use_image_id: bool = True  # write ``<image_id>n</image_id>`` before each image
    im_start: str = "<image>"  # prompt text before the overview
    im_end: str = "</image>"  # prompt text after the overview
    slice_start: str = "<slice>"  # prompt text before each slice
    slice_end: str = "</slice>"  # prompt text after each slice
    im_id_start: str = "<image_id>"  # prompt text before the image number
    im_id_end: str = "</image_id>"  # prompt text after the image number

    def __post_init__(self) -> None:
        for name in ("scale_resolution", "patch_size", "max_slice_nums", "tokens_per_slice"):
            checks.check_int(name, getattr(self, name))
        for name in ("slice_mode", "use_image_id"):
            checks.check_bool(name, getattr(self, name))
        for name in ("im_start", "im_end", "slice_start", "slice_end", "im_id_start", "im_id_end"):
            checks.check_str(name, getattr(self, name))
        checks.check_resample(self.resample)
        checks.check_mean_std(self.mean, self.std)

    @property
    def frame_size(self) -> Optional[tuple[int, int]]:
        """None: the frames have sizes of their own."""
        return None

    @classmethod
    def from_processor_config(cls, d: dict) -> "UhdSlicing":
        """From a MiniCPM-V ``preprocessor_config.json`` (``MiniCPMVImageProcessor``'s keys:
        ``max_slice_nums``, ``scale_resolution``, ``patch_size``, ``image_feature_size``,
        ``slice_mode``, ``use_image_id``, ``norm_mean``, ``norm_std``, token strings).

        Raises:
            InputError: a bad value.
        """
        names = ("im_start", "im_end", "slice_start", "slice_end", "im_id_start", "im_id_end")
        tokens = {k: d[k] for k in names if k in d}
        return cls(
            scale_resolution=d.get("scale_resolution", 448),
            patch_size=d.get("patch_size", 14),
            max_slice_nums=d.get("max_slice_nums", 9),
            slice_mode=d.get("slice_mode", True),
            tokens_per_slice=d.get("image_feature_size", 64),
            mean=checks.float_list(d.get("norm_mean", [0.5, 0.5, 0.5]), "norm_mean"),
            std=checks.float_list(d.get("norm_std", [0.5, 0.5, 0.5]), "norm_std"),
            use_image_id=d.get("use_image_id", False),
            **tokens,
        )

    def to_dict(self) -> dict:
        """Plain JSON (for the manifest), tagged with ``"scheme": "uhd"``."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "UhdSlicing":
        """Inverse of :meth:`to_dict`. Raises :class:`InputError` on unknown keys."""
        try:
            return cls(**{k: v for k, v in d.items() if k != "scheme"})
        except TypeError as exc:
            raise InputError(f"bad uhd slicing parameters: {exc}") from None


# ``VisionSpec.preprocess``: one of these, picked by its ``scheme`` field.
VisionPreprocess = Union[
    ImagePreprocess, Idefics3Slicing, AnyresSlicing, UhdSlicing, Qwen2VLPreprocess, Gemma3Preprocess
]

# The classes by their ``scheme`` tag.
PREPROCESS_SCHEMES: dict[str, type] = {
    "clip": ImagePreprocess,
    "idefics3": Idefics3Slicing,
    "anyres": AnyresSlicing,
    "uhd": UhdSlicing,
    "qwen2vl": Qwen2VLPreprocess,
    "gemma3": Gemma3Preprocess,
}
