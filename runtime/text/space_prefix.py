"""The SentencePiece "▁" prefix rules that llama.cpp's tokenizer does not do itself.

HF's ``Metaspace`` pre-tokenizer with ``prepend_scheme: "first"`` (LlamaTokenizerFast with
``legacy=False``, e.g. many LLaVA and Mistral checkpoints) puts one "▁" before the first text
fragment only, and not when that fragment already starts with a space or the text starts with
a special token (tokenizers' ``Metaspace::pre_tokenize``). llama.cpp's ``add_space_prefix``
puts it before every fragment that follows a special token, so such bundles carry
``add_space_prefix = false`` in the GGUF and ``LLMSpec.space_prefix = "first"``, and the runtime
(and the export-time tokenizer probe) apply the rule here before tokenizing a prompt.
"""

from __future__ import annotations

from typing import Callable

# enough characters to hold any special token's text at the start of a prompt
_HEAD = 64


def with_space_prefix(text: str, rule: str, tokenize: Callable[[str, bool], list[int]]) -> str:
    """``text`` with the space ``rule`` ("gguf": unchanged, "first") asks for in front.

    ``tokenize(text, special)`` is the LLM's tokenizer without BOS; a text starts with a special
    token when parsing special tokens changes its first id.
    """
    if rule != "first" or not text or text.startswith(" "):
        return text
    head = text[:_HEAD]
    if tokenize(head, True)[:1] != tokenize(head, False)[:1]:
        return text
    return " " + text
