"""Idefics3 / SmolVLM (transformers ``Idefics3ForConditionalGeneration``): a SigLIP-like
tower on fixed-size tiles, a pixel-shuffle connector, a Llama LLM. Images are split into
tiles plus a global image (Idefics3 image splitting) with row/column tokens in the prompt."""

from __future__ import annotations

from pathlib import Path

import torch

from edge.errors import ExportError
from edge.export import mmproj_maps
from edge.export.families.llava import read_processor_config
from edge.export.llm_llama import LLAMA
from edge.export.registry import FamilySpec, VisionPart
from edge.manifest import PromptLayout
from edge.preprocess import Idefics3Slicing


class Idefics3Vision(torch.nn.Module):
    """One full tile -> connector output, as ``get_image_features`` computes it for an
    unpadded tile. The position ids of a full tile are computed once, here, the way
    ``Idefics3VisionEmbeddings`` derives them from an all-ones patch mask, because its
    per-image loop and ``bucketize`` do not trace."""

    def __init__(self, model) -> None:
        super().__init__()
        vm = model.model.vision_model
        self.patch_embedding = vm.embeddings.patch_embedding
        self.position_embedding = vm.embeddings.position_embedding
        self.encoder = vm.encoder
        self.post_layernorm = vm.post_layernorm
        self.connector = model.model.connector
        side = vm.embeddings.num_patches_per_side
        boundaries = torch.arange(1 / side, 1.0, 1 / side)
        coords = torch.arange(side, dtype=torch.float32) / side * (1 - 1e-6)
        buckets = torch.bucketize(coords, boundaries, right=True)
        self.register_buffer("position_ids", (buckets[:, None] * side + buckets).flatten()[None], persistent=False)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        x = self.patch_embedding(pixel_values).flatten(2).transpose(1, 2)
        x = x + self.position_embedding(self.position_ids)
        x = self.encoder(inputs_embeds=x).last_hidden_state
        return self.connector(self.post_layernorm(x))


def reference_features(model, pixel_values: torch.Tensor) -> torch.Tensor:
    """transformers' own ``get_image_features`` on the tiles (one image of n tiles)."""
    return model.get_image_features(pixel_values=pixel_values[None])


def _processor_config(src: Path) -> dict:
    return read_processor_config(src, ("Idefics3ImageProcessor", "Idefics3ImageProcessorFast"))


def preprocess(src: Path, cfg) -> Idefics3Slicing:
    """Idefics3 image splitting (the processor's sizes, kernel, rescale and normalisation) and
    the prompt tokens around tiles."""
    params = Idefics3Slicing.from_processor_config(_processor_config(src), tokens_per_tile=tokens_per_tile(cfg))
    if params.tile_size != cfg.vision_config.image_size:
        raise ExportError(
            f"the image processor's tile size {params.tile_size} differs from the vision tower's "
            f"image_size {cfg.vision_config.image_size}"
        )
    return params


def tokens_per_tile(cfg) -> int:
    """Rows per tile after the pixel shuffle: (tile/patch)^2 / scale^2."""
    vc = cfg.vision_config
    return (vc.image_size // vc.patch_size) ** 2 // cfg.scale_factor**2


def prompt_layout(cfg, vocab: list[str]) -> PromptLayout:
    return PromptLayout(image_marker="<image>")


def _text_tensors(model):
    for name, t in model.model.text_model.state_dict().items():
        yield f"model.{name}", t
    yield "lm_head.weight", model.lm_head.weight


SPEC = FamilySpec(
    name="idefics3",
    model_types=("idefics3",),
    model_class="Idefics3ForConditionalGeneration",
    llm=LLAMA,
    text_config=lambda cfg: cfg.text_config,
    text_tensors=_text_tensors,
    vision=VisionPart(
        scheme="idefics3",
        module=Idefics3Vision,
        reference=reference_features,
        preprocess=preprocess,
        tokens_per_image=tokens_per_tile,
        prompt=prompt_layout,
        projector=mmproj_maps.idefics3,
    ),
)
