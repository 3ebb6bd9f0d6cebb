"""SmolVLM / SmolVLM2 (transformers ``SmolVLMForConditionalGeneration``, ``model_type`` "smolvlm").

The architecture is Idefics3's (SigLIP-like tower on fixed tiles, pixel-shuffle connector, Llama
LLM) and ``SmolVLMImageProcessor`` is ``Idefics3ImageProcessor``'s code, so images use the
``idefics3`` scheme as they are. What SmolVLM2 adds is video (``SmolVLMVideoProcessor``): sampled
frames, each one unsplit image, between timestamp texts (:class:`edge.video.VideoFrames`), and the
``<video>`` marker with the processor's own chat template for conversations that hold a video.
"""

from __future__ import annotations

import json
from pathlib import Path

from edge.checks import resample_name
from edge.errors import ExportError
from edge.export import mmproj_maps
from edge.export.families import idefics3
from edge.export.families.llava import read_processor_config
from edge.export.llm_llama import LLAMA
from edge.export.registry import FamilySpec, VisionPart
from edge.manifest import PromptLayout
from edge.preprocess import Idefics3Slicing
from edge.video import VideoFrames

IMAGE_PROCESSORS = ("SmolVLMImageProcessor", "SmolVLMImageProcessorFast")
VIDEO_MARKER = "<video>"  # SmolVLMProcessor.video_token's default
# processing_smolvlm.DEFAULT_CHAT_TEMPLATE (4.57): the template SmolVLMProcessor.apply_chat_template
# uses whenever a conversation holds a video and no template is passed (its "video" parts render <video>)
VIDEO_CHAT_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{message['role'] | capitalize}}"
    "{% if message['content'][0]['type'] == 'image' %}{{':'}}{% else %}{{': '}}{% endif %}"
    "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{line['text']}}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% elif line['type'] == 'video' %}{{ '<video>' }}"
    "{% endif %}{% endfor %}<end_of_utterance>\n{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)


def preprocess(src: Path, cfg) -> Idefics3Slicing:
    """The image processor's splitting parameters (as Idefics3's)."""
    pc = read_processor_config(src, IMAGE_PROCESSORS)
    params = Idefics3Slicing.from_processor_config(pc, tokens_per_tile=idefics3.tokens_per_tile(cfg))
    if params.tile_size != cfg.vision_config.image_size:
        raise ExportError(
            f"the image processor's tile size {params.tile_size} differs from the vision tower's "
            f"image_size {cfg.vision_config.image_size}"
        )
    return params


def video_frames(src: Path, cfg) -> VideoFrames:
    """``SmolVLMVideoProcessor``'s settings, read as transformers reads them: from
    ``video_preprocessor_config.json`` if the checkpoint has one, else from
    ``preprocessor_config.json`` (its ``video_sampling``; there ``size`` wins over
    ``video_sampling.video_size``, as ``SmolVLMVideoProcessor.__init__`` does)."""
    own = src / "video_preprocessor_config.json"
    pc = json.loads(own.read_text(encoding="utf-8")) if own.is_file() else read_processor_config(src, IMAGE_PROCESSORS)
    sampling = pc.get("video_sampling") or {}
    size = pc.get("size") if "size" in pc and sampling else sampling.get("video_size", pc.get("size"))
    longest = (size or {}).get("longest_edge", 4 * 364)
    frame = (pc.get("max_image_size") or {}).get("longest_edge", 364)
    if frame != cfg.vision_config.image_size:
        raise ExportError(
            f"the video frame size {frame} differs from the vision tower's {cfg.vision_config.image_size}"
        )
    kernel = resample_name(pc.get("resample", 1))
    return VideoFrames(
        max_frames=int(sampling.get("max_frames", 64)),
        fps=float(sampling.get("fps", 1.0)),
        longest_edge=int(longest),
        frame_size=int(frame),
        # SmolVLMVideoProcessor.resize: torchvision has no Lanczos for tensors, it uses bicubic
        resample="bicubic" if kernel == "lanczos" else kernel,
        do_resize=bool(pc.get("do_resize", True)),
        do_rescale=bool(pc.get("do_rescale", True)),
        rescale_factor=float(pc.get("rescale_factor", 1.0 / 255.0)),
        do_normalize=bool(pc.get("do_normalize", True)),
        mean=[float(x) for x in pc.get("image_mean", [0.5, 0.5, 0.5])],
        std=[float(x) for x in pc.get("image_std", [0.5, 0.5, 0.5])],
    )


def prompt_layout(cfg, vocab: list[str]) -> PromptLayout:
    """``<image>`` and ``<video>`` markers; videos use the processor's own chat template."""
    return PromptLayout(image_marker="<image>", video_marker=VIDEO_MARKER, video_chat_template=VIDEO_CHAT_TEMPLATE)


SPEC = FamilySpec(
    name="smolvlm",
    model_types=("smolvlm",),
    model_class="SmolVLMForConditionalGeneration",
    llm=LLAMA,
    text_config=lambda cfg: cfg.text_config,
    text_tensors=idefics3._text_tensors,
    vision=VisionPart(
        scheme="idefics3",
        module=idefics3.Idefics3Vision,
        reference=idefics3.reference_features,
        preprocess=preprocess,
        tokens_per_image=idefics3.tokens_per_tile,
        prompt=prompt_layout,
        video=video_frames,
        projector=mmproj_maps.idefics3,
    ),
)
