"""Helpers for the chat-affix tests: a grid of conversations (1-4 turns, with and without a system
message, images with and without markers, whitespace-padded texts) and the parity check
"rendering through the affixes == render_chat, exactly"."""

from __future__ import annotations

import itertools
from typing import Optional

from edge.manifest import ChatAffixes, LLMSpec, PromptLayout
from edge.runtime.text.chat_affixes import render_affixes
from edge.runtime.text.prompt import Message, detect_content_format, render_chat

TEXTS = ("Hello!", "  What is shown here? \n", "\ttwo\nlines ", "<think>Hm.</think>\nA cat.", "ok")
SYSTEMS = (None, "You are a careful assistant.", " Answer briefly.\n")


def llm_spec(template: str, bos: Optional[str] = "<s>", eos: Optional[str] = "</s>") -> LLMSpec:
    """An LLMSpec that only carries a chat template and its bos/eos texts."""
    return LLMSpec(
        file="llm.gguf", arch="llama", dtype="f32", n_ctx_train=2048, n_embd=8, n_vocab=16, bos_id=1,
        eos_ids=[2], add_bos=True, chat_template=template, bos_token=bos, eos_token=eos,
    )  # fmt: skip


def layout_for(template: str, marker: str = "<image>", **kw) -> PromptLayout:
    """The layout the exporter would record for ``template`` (content format detected as it does)."""
    return PromptLayout(image_marker=marker, content_format=detect_content_format(template, marker), **kw)


def _user(k: int, marker: str) -> Message:
    text = TEXTS[k % len(TEXTS)]
    variant = k % 4
    if variant == 1:
        return Message("user", text, ("image-a",))
    if variant == 2:
        return Message("user", f"{marker} left {marker}right {text}", ("image-a", "image-b"))
    if variant == 3:
        return Message("user", f"{text}look: {marker}", ("image-a",))
    return Message("user", text)


def conversations(marker: str, every: int = 1) -> list[list[Message]]:
    """1-4 turns (user first, alternating), each system option, several image/text variants."""
    out = []
    for n, system, shift in itertools.product(range(1, 5), SYSTEMS, range(3)):
        convo = [Message("system", system)] if system is not None else []
        for i in range(n):
            k = n * 7 + shift * 3 + i
            if i % 2 == 0:
                convo.append(_user(k, marker))
            else:
                convo.append(Message("assistant", TEXTS[(k + 2) % len(TEXTS)]))
        out.append(convo)
    return out[::every]


def assert_renders_alike(affixes: ChatAffixes, llm: LLMSpec, layout: PromptLayout, convos: list[list[Message]]) -> int:
    """Every conversation, with and without the generation prompt, renders to the same text both
    ways; returns how many renders were compared."""
    n = 0
    for convo, agp in itertools.product(convos, (True, False)):
        want = render_chat(llm, layout, convo, add_generation_prompt=agp)
        got = render_affixes(affixes, layout, convo, add_generation_prompt=agp)
        assert got == want, f"{[(m.role, m.text, len(m.images)) for m in convo]} agp={agp}\n{got!r}\n!=\n{want!r}"
        n += 1
    return n
