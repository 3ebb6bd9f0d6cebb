"""Random-weight models of real architectures, built offline into HF checkpoint folders.

``tiny``: tiny models for parity tests (built in seconds); ``full_size``: full-size shapes
with random vision weights and the real SmolLM2-135M text model, for benchmarks (speed
does not depend on the weight values). Tests, benchmarks and ``edge bench`` all build
their models here. Needs the ``export`` extra (torch, transformers).
"""

from edge.export.builders.tiny import tiny_idefics3, tiny_llama, tiny_llava, tiny_llava_next
from edge.export.builders.tiny_gemma3 import tiny_gemma3, tiny_gemma3_text
from edge.export.builders.tiny_qwen2_5_vl import tiny_qwen2_5_vl
from edge.export.builders.tiny_smolvlm import tiny_smolvlm
from edge.export.builders.tiny_whisper import tiny_whisper

# A tiny builder per registered family (tests/parity/test_registry_coverage.py checks them all).
TINY_BUILDERS = {
    "llama": tiny_llama,
    "llava": tiny_llava,
    "idefics3": tiny_idefics3,
    "llava_next": tiny_llava_next,
    "smolvlm": tiny_smolvlm,
    "gemma3": tiny_gemma3,
    "gemma3_text": tiny_gemma3_text,
    "qwen2_5_vl": tiny_qwen2_5_vl,
    "whisper": tiny_whisper,
}
