"""The ``gemma3`` scheme's parameters (a member of :data:`edge.preprocess.VisionPreprocess`).

Gemma 3 (``Gemma3ImageProcessor`` + ``Gemma3Processor`` of transformers 4.57): every frame is
the whole image resized to the tower's fixed size; with pan-and-scan, images of a
sufficiently extreme aspect ratio also give crops (a row or a column of them), each resized
the same way and written into the prompt after the original. Kept in its own module so
``edge/preprocess.py`` stays small; the value checks are :mod:`edge.checks`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal, Optional

from edge import checks
from edge.errors import InputError

# Gemma3ProcessorKwargs._defaults: what Gemma3Processor passes for pan-and-scan unless the caller does
PAS_MIN_CROP_SIZE, PAS_MAX_NUM_CROPS, PAS_MIN_RATIO = 256, 4, 1.2


@dataclass(frozen=True)
class Gemma3Preprocess:
    """The ``gemma3`` scheme: a fixed-size resize per frame, optional pan-and-scan crops.

    ``image_size`` is ``size["height"]`` (= width, the SigLIP tower's input), ``tokens_per_image``
    the projector's ``mm_tokens_per_image`` (the processor's ``image_seq_length``). The token
    strings are the ones ``Gemma3Processor`` writes around each frame's soft tokens.
    """

    scheme: Literal["gemma3"] = "gemma3"  # the scheme tag
    image_size: int = 896  # side of every frame (the graph's input size)
    tokens_per_image: int = 256  # embedding rows per frame
    resample: str = "bilinear"  # resize kernel: nearest, bilinear, bicubic, lanczos, box or hamming
    do_resize: bool = True  # resize every frame to image_size x image_size (must be true)
    do_rescale: bool = True  # multiply the uint8 values by ``rescale_factor``
    rescale_factor: float = 1.0 / 255.0  # the rescale multiplier
    do_normalize: bool = True  # then ``(x - mean) / std`` per channel
    mean: list[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])  # per-channel mean (R, G, B)
    std: list[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])  # per-channel standard deviation (R, G, B)
    do_pan_and_scan: bool = False  # cut crops from images of an extreme aspect ratio
    pan_and_scan_min_crop_size: int = PAS_MIN_CROP_SIZE  # no crop narrower than this (pixels of the source)
    pan_and_scan_max_num_crops: int = PAS_MAX_NUM_CROPS  # the most crops of one image
    pan_and_scan_min_ratio_to_activate: float = PAS_MIN_RATIO  # long side / short side that turns crops on
    boi_token: str = "<start_of_image>"  # prompt text before each frame's rows (also the prompt's image marker)
    eoi_token: str = "<end_of_image>"  # prompt text after each frame's rows

    def __post_init__(self) -> None:
        for name in ("image_size", "tokens_per_image", "pan_and_scan_min_crop_size", "pan_and_scan_max_num_crops"):
            checks.check_int(name, getattr(self, name))
        for name in ("do_resize", "do_rescale", "do_normalize", "do_pan_and_scan"):
            checks.check_bool(name, getattr(self, name))
        for name in ("boi_token", "eoi_token"):
            checks.check_str(name, getattr(self, name))
        checks.check_resample(self.resample)
        checks.check_float("rescale_factor", self.rescale_factor)
        checks.check_float("pan_and_scan_min_ratio_to_activate", self.pan_and_scan_min_ratio_to_activate)
        checks.check_mean_std(self.mean, self.std)
        if not self.do_resize:
            raise InputError("gemma3 preprocessing needs do_resize: every frame must be image_size x image_size")
        if not self.boi_token:
            raise InputError("boi_token must not be empty (it is the prompt's image marker)")

    @property
    def frame_size(self) -> Optional[tuple[int, int]]:
        """``(height, width)`` of every frame the vision graph gets."""
        return (self.image_size, self.image_size)

    @classmethod
    def from_processor_config(cls, d: dict, *, tokens_per_image: int) -> "Gemma3Preprocess":
        """From a ``Gemma3ImageProcessor`` ``preprocessor_config.json`` dict.

        Pan-and-scan is on when the config says ``do_pan_and_scan: true``; its limits left
        ``null`` take ``Gemma3Processor``'s defaults (256, 4, 1.2).

        Raises:
            InputError: a non-square ``size`` or a bad value.
        """
        size = d.get("size") or {"height": 224, "width": 224}
        if not isinstance(size, dict) or size.get("height") != size.get("width") or not size.get("height"):
            raise InputError(f"gemma3 preprocessing needs a square size {{'height': N, 'width': N}}, got {size!r}")

        def pick(key: str, default):
            value = d.get(key)
            return default if value is None else value

        return cls(
            image_size=size["height"],
            tokens_per_image=tokens_per_image,
            resample=checks.resample_name(pick("resample", 2)),
            do_resize=pick("do_resize", True),
            do_rescale=pick("do_rescale", True),
            rescale_factor=float(pick("rescale_factor", 1.0 / 255.0)),
            do_normalize=pick("do_normalize", True),
            mean=checks.float_list(pick("image_mean", [0.5, 0.5, 0.5]), "image_mean"),
            std=checks.float_list(pick("image_std", [0.5, 0.5, 0.5]), "image_std"),
            do_pan_and_scan=bool(pick("do_pan_and_scan", False)),
            pan_and_scan_min_crop_size=pick("pan_and_scan_min_crop_size", PAS_MIN_CROP_SIZE),
            pan_and_scan_max_num_crops=pick("pan_and_scan_max_num_crops", PAS_MAX_NUM_CROPS),
            pan_and_scan_min_ratio_to_activate=float(pick("pan_and_scan_min_ratio_to_activate", PAS_MIN_RATIO)),
        )

    def to_dict(self) -> dict:
        """Plain JSON (for the manifest), tagged with ``"scheme": "gemma3"``."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Gemma3Preprocess":
        """Inverse of :meth:`to_dict`. Raises :class:`InputError` on unknown keys."""
        try:
            return cls(**{k: v for k, v in d.items() if k != "scheme"})
        except TypeError as exc:
            raise InputError(f"bad gemma3 preprocessing parameters: {exc}") from None
