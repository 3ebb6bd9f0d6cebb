"""Quantization recipes: what each component of a bundle becomes, by name.

A recipe names a llama.cpp type for the LLM (quantized by llama.cpp itself) and a
method for the ONNX graphs. The method names are also the ``dtype`` the new manifest
records for the graph:

- ``int8``: dynamic int8 (onnxruntime ``quantize_dynamic``): weights of MatMuls with a
  constant B stored as int8, activations quantized on the fly at run time;
- ``int4``: weight-only int4 in blocks (onnxruntime ``MatMulNBitsQuantizer`` ->
  ``com.microsoft.MatMulNBits``);
- ``qdq-int8``: static QuantizeLinear/DequantizeLinear with int8 weights, activation ranges
  calibrated on images and the input fixed to one image, the form NPU execution providers
  (QNN) take. Activations are 16-bit by default: with 8-bit activations a full-size SigLIP
  tower keeps a cosine of only ~0.5 to f32 (per-tensor ranges cannot hold its attention
  and residual activations), with 16-bit ones 0.9997 (docs/quantization.md). The graph is first
  rewritten into operators QNN's HTP takes (``onnx_quant.htp_ready``: exact GELU as one ``Gelu``
  node instead of ``Erf``), and the ``npu-*`` recipes check the result on the HTP (its x86
  emulator here) and record whether it runs whole (``provenance.npu``, ``docs/devices.md``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional

from edge.errors import InputError
from edge.runtime.llama_backend import GGUF_QUANT_TYPES

GRAPH_METHODS = ("int8", "int4", "qdq-int8")


@dataclass(frozen=True)
class Recipe:
    """One named recipe. ``None`` leaves that component as it is."""

    name: str
    summary: str
    llm: Optional[str]
    vision: Optional[str]
    # Whisper encoder/decoder graphs (KV-cached decoders are not statically quantizable)
    audio: Optional[str] = None
    int4_block: int = 32
    # activation type of static QDQ graphs: "uint16" (QNN's A16W8) or "uint8"
    qdq_activations: str = "uint16"
    # the NPU the vision graph is made for: checked (when its provider is installed) and recorded
    # in provenance.npu (edge.quantize.npu.npu_record); None for CPU/GPU recipes
    npu: Optional[str] = None

    def __post_init__(self) -> None:
        if self.llm is not None and self.llm not in GGUF_QUANT_TYPES:
            raise InputError(
                f"recipe {self.name}: unknown GGUF type {self.llm!r} (known: {', '.join(GGUF_QUANT_TYPES)})"
            )
        for part, method in (("vision", self.vision), ("audio", self.audio)):
            if method is not None and method not in GRAPH_METHODS:
                raise InputError(
                    f"recipe {self.name}: unknown {part} method {method!r} (known: {', '.join(GRAPH_METHODS)})"
                )
        if self.audio == "qdq-int8":
            raise InputError(f"recipe {self.name}: the audio decoder cannot be statically quantized")
        if self.qdq_activations not in ("uint8", "uint16"):
            raise InputError(
                f"recipe {self.name}: QDQ activations must be uint8 or uint16, got {self.qdq_activations!r}"
            )
        if self.int4_block < 16 or self.int4_block & (self.int4_block - 1):
            raise InputError(f"recipe {self.name}: the int4 block must be a power of two >= 16, got {self.int4_block}")

    def describe(self) -> dict:
        """The recipe as recorded in the manifest (``provenance.quantization``)."""
        return {
            "recipe": self.name,
            "summary": self.summary,
            "llm": self.llm,
            "vision": self.vision,
            "audio": self.audio,
            **({"int4_block": self.int4_block} if "int4" in (self.vision, self.audio) else {}),
            **({"qdq_activations": self.qdq_activations} if self.vision == "qdq-int8" else {}),
            **({"npu": self.npu} if self.npu else {}),
        }


RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in (
        Recipe("q8", "vision/audio dynamic int8, LLM Q8_0", llm="Q8_0", vision="int8", audio="int8"),
        # Q4_K_M, not the faster Q4_0: measured on SmolLM2-135M (Zen 5), Q4_0 prefills 1.7x and decodes 1.5x
        # faster but its KL to f16 is 5x Q4_K_M's and it no longer completes "The capital of France is" with
        # Paris (docs/quantization.md, "Choosing the LLM's type"); --llm-type Q4_0 asks for it
        Recipe("q4", "vision/audio dynamic int8, LLM Q4_K_M", llm="Q4_K_M", vision="int8", audio="int8"),
        Recipe(
            "q4-int4vision",
            "vision int4 weights (MatMulNBits, block 32), audio int8, LLM Q4_K_M",
            llm="Q4_K_M",
            vision="int4",
            audio="int8",
        ),
        # Q4_0 is the type llama.cpp repacks at load for ARM (phone) CPUs, where NPUs live
        Recipe(
            "npu-int8",
            "vision static QDQ, int8 weights and 16-bit activations (calibrated, one image per run) for NPUs, LLM Q4_0",
            llm="Q4_0",
            vision="qdq-int8",
            audio=None,
            npu="qnn-htp",
        ),
        Recipe(
            "npu-int8-a8",
            "vision static QDQ, int8 weights and 8-bit activations, for NPUs without "
            "16-bit activations (check the report: transformer towers may lose much), LLM Q4_0",
            llm="Q4_0",
            vision="qdq-int8",
            audio=None,
            npu="qnn-htp",
            qdq_activations="uint8",
        ),
    )
}


def get_recipe(name: str) -> Recipe:
    """The recipe called ``name``, or an :class:`InputError` listing the known ones."""
    if name not in RECIPES:
        raise InputError(f"unknown recipe {name!r} (recipes: {', '.join(RECIPES)})")
    return RECIPES[name]


def recipe_with_llm_type(name: str, llm_type: Optional[str] = None) -> Recipe:
    """The recipe called ``name``; with ``llm_type`` (a llama.cpp type of :data:`GGUF_QUANT_TYPES`,
    any case: ``q4_k_m``, ``Q5_K_M``) its LLM becomes that type instead of the recipe's default
    (``edge quantize --llm-type``); the vision and audio methods stay the recipe's."""
    recipe = get_recipe(name)
    if llm_type is None:
        return recipe
    if recipe.llm is None:
        raise InputError(f"recipe {name} keeps the LLM as it is: --llm-type does not apply to it")
    ftype = llm_type.upper()
    return dataclasses.replace(recipe, llm=ftype, summary=f"{recipe.summary} (LLM {ftype} asked for)")
