"""Plain Llama-architecture causal LMs (SmolLM2, Llama 2/3, ...): an LLM-only bundle."""

from __future__ import annotations

from edge.export.llm_llama import LLAMA
from edge.export.registry import FamilySpec


def _tensors(model):
    yield from model.state_dict().items()


SPEC = FamilySpec(
    name="llama",
    model_types=("llama",),
    model_class="AutoModelForCausalLM",
    llm=LLAMA,
    text_config=lambda cfg: cfg,
    text_tensors=_tensors,
)
