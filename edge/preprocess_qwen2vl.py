"""The ``qwen2vl`` scheme's parameters (Qwen2-VL / Qwen2.5-VL dynamic resolution), one variant of
:data:`edge.preprocess.VisionPreprocess` (kept in its own module: ``edge/preprocess.py`` holds the
union and the older schemes)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal, Optional

from edge import checks
from edge.errors import InputError

# OPENAI_CLIP_MEAN / _STD, Qwen2VLImageProcessor's defaults (the same values as edge.preprocess.CLIP_*)
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


@dataclass(frozen=True)
class Qwen2VLPreprocess:
    """The ``qwen2vl`` scheme: Qwen2-VL / Qwen2.5-VL dynamic resolution, as
    ``Qwen2VLImageProcessor`` does it (``smart_resize`` to multiples of ``patch_size *
    merge_size`` between ``min_pixels`` and ``max_pixels``, rescale, normalise, then patchify
    into ``[patches, 3 * temporal_patch_size * patch_size ** 2]`` rows); defaults are its own.

    The vision graph takes the patches of one temporal group of one image per run, plus the
    precomputed inputs named by the ``*_input`` fields (``docs/qwen2_5_vl.md`` defines them):
    2-D rotary positions, the window permutation and its inverse, and the padded window
    gather/scatter indices and key mask of the windowed attention layers (``window_patches``
    patches per window). ``tokens_per_second`` times the seconds between temporal groups is a
    video's temporal M-RoPE step (images: one group, step 0).
    """

    scheme: Literal["qwen2vl"] = "qwen2vl"  # the scheme tag
    patch_size: int = 14  # side of one vision patch (pixels)
    temporal_patch_size: int = 2  # frames per temporal patch (an image is repeated to fill it)
    merge_size: int = 2  # patches merged per side into one LLM row (spatial_merge_size)
    min_pixels: int = 56 * 56  # the fewest pixels after the resize (size["shortest_edge"])
    max_pixels: int = 28 * 28 * 1280  # the most pixels after the resize (size["longest_edge"])
    resample: str = "bicubic"  # resize kernel: nearest, bilinear, bicubic, lanczos, box or hamming
    do_resize: bool = True  # smart_resize (else the size must already be a multiple of the factor)
    do_rescale: bool = True  # multiply the uint8 values by ``rescale_factor``
    rescale_factor: float = 1.0 / 255.0  # the rescale multiplier
    do_normalize: bool = True  # then ``(x - mean) / std`` per channel
    mean: list[float] = field(default_factory=lambda: list(CLIP_MEAN))  # per-channel mean (R, G, B)
    std: list[float] = field(default_factory=lambda: list(CLIP_STD))  # per-channel standard deviation (R, G, B)
    window_patches: int = 64  # patches per attention window ((window_size // patch_size) ** 2)
    window_units: int = 4  # merged units per window side (window_size // merge_size // patch_size)
    tokens_per_second: float = 2.0  # the vision config's tokens_per_second (video M-RoPE time step)
    rope_input: str = "rope_pos"  # int64 [patches, 2]: (row, col) of each patch, window order
    window_index_input: str = "window_index"  # int64 [patches / merge**2]: window order of merged units
    reverse_index_input: str = "reverse_index"  # int64 [patches / merge**2]: its inverse permutation
    window_gather_input: str = "window_gather"  # int64 [windows * window_patches]: patch per window slot
    window_scatter_input: str = "window_scatter"  # int64 [patches]: window slot of each patch
    window_mask_input: str = "window_mask"  # float32 [windows, window_patches]: 0 valid, -1e30 padding

    def __post_init__(self) -> None:
        for name in ("patch_size", "temporal_patch_size", "merge_size", "min_pixels", "max_pixels"):
            checks.check_int(name, getattr(self, name))
        for name in ("window_patches", "window_units"):
            checks.check_int(name, getattr(self, name))
        for name in ("do_resize", "do_rescale", "do_normalize"):
            checks.check_bool(name, getattr(self, name))
        for name in ("rope_input", "window_index_input", "reverse_index_input"):
            checks.check_str(name, getattr(self, name))
        for name in ("window_gather_input", "window_scatter_input", "window_mask_input"):
            checks.check_str(name, getattr(self, name))
        checks.check_resample(self.resample)
        checks.check_float("rescale_factor", self.rescale_factor)
        checks.check_float("tokens_per_second", self.tokens_per_second)
        checks.check_mean_std(self.mean, self.std)
        checks.check_pixel_range(self.min_pixels, self.max_pixels, self.factor)
        if self.window_patches != (self.window_units * self.merge_size) ** 2:
            raise InputError(
                f"window_patches {self.window_patches} is not (window_units * merge_size) ** 2 "
                f"= {(self.window_units * self.merge_size) ** 2}"
            )

    @property
    def factor(self) -> int:
        """Image sides are multiples of this: one merged patch (``patch_size * merge_size``)."""
        return self.patch_size * self.merge_size

    @property
    def frame_size(self) -> Optional[tuple[int, int]]:
        """None: every image keeps a size of its own."""
        return None

    @property
    def graph_inputs(self) -> list[str]:
        """The precomputed inputs the vision graph takes besides the patches, in order."""
        return [
            self.rope_input,
            self.window_index_input,
            self.reverse_index_input,
            self.window_gather_input,
            self.window_scatter_input,
            self.window_mask_input,
        ]

    @classmethod
    def from_processor_config(cls, d: dict, *, window_size: int = 112, tokens_per_second: float = 2.0):
        """From ``preprocessor_config.json`` of a ``Qwen2VLImageProcessor``; ``window_size`` and
        ``tokens_per_second`` come from the model's vision config.

        Raises:
            InputError: a bad value, or a window that is not a whole number of merged patches.
        """
        size = d.get("size") or {}
        min_pixels = d.get("min_pixels") or size.get("shortest_edge") or 56 * 56
        max_pixels = d.get("max_pixels") or size.get("longest_edge") or 28 * 28 * 1280
        patch, merge = d.get("patch_size", 14), d.get("merge_size", 2)
        if window_size % (patch * merge):
            raise InputError(f"window_size {window_size} is not a multiple of patch_size * merge_size")
        units = window_size // merge // patch
        return cls(
            patch_size=patch,
            temporal_patch_size=d.get("temporal_patch_size", 2),
            merge_size=merge,
            min_pixels=min_pixels,
            max_pixels=max_pixels,
            resample=checks.resample_name(d.get("resample", 3)),
            do_resize=d.get("do_resize", True),
            do_rescale=d.get("do_rescale", True),
            rescale_factor=float(d.get("rescale_factor", 1.0 / 255.0)),
            do_normalize=d.get("do_normalize", True),
            mean=checks.float_list(d.get("image_mean", CLIP_MEAN), "image_mean"),
            std=checks.float_list(d.get("image_std", CLIP_STD), "image_std"),
            window_patches=(units * merge) ** 2,
            window_units=units,
            tokens_per_second=float(tokens_per_second),
        )

    def to_dict(self) -> dict:
        """Plain JSON (for the manifest), tagged with ``"scheme": "qwen2vl"``."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Qwen2VLPreprocess":
        """Inverse of :meth:`to_dict`. Raises :class:`InputError` on unknown keys."""
        try:
            return cls(**{k: v for k, v in d.items() if k != "scheme"})
        except TypeError as exc:
            raise InputError(f"bad qwen2vl preprocessing parameters: {exc}") from None
