"""Prompt building: chat template rendering, image placeholders, and prompt chunks.

A prompt becomes a list of chunks: token ids for text and an image index for each
image, placed where the family's marker (``<image>`` for LLaVA) stands.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable, Optional, Sequence, Union

from jinja2 import TemplateError
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

from edge.errors import InputError
from edge.manifest import LLMSpec, PromptLayout


@dataclass(frozen=True)
class Message:
    """One chat turn. ``images`` are image sources (paths, bytes, PIL images, arrays)."""

    role: str
    text: str
    images: tuple = field(default_factory=tuple)


@dataclass(frozen=True)
class ImageSlot:
    """Where the ``index``-th image of the request goes in the prompt."""

    index: int


Chunk = Union[list, ImageSlot]


def _raise(message: str) -> None:
    raise TemplateError(message)


def _environment() -> ImmutableSandboxedEnvironment:
    # Same settings as transformers' chat-template renderer, so templates behave alike.
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.globals["raise_exception"] = _raise
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env


def _content(msg: Message, layout: PromptLayout) -> Any:
    if layout.content_format == "parts":
        if msg.images and layout.image_marker in msg.text:
            # images placed in the text by their markers keep their order among the text parts
            out: list[dict] = []
            for i, piece in enumerate(msg.text.split(layout.image_marker)):
                out += ([{"type": "image"}] if i else []) + ([{"type": "text", "text": piece}] if piece else [])
            return out
        parts: list[dict] = [{"type": "image"} for _ in msg.images]
        return parts + [{"type": "text", "text": msg.text}]
    if msg.images and layout.image_marker not in msg.text:
        return layout.image_marker * len(msg.images) + "\n" + msg.text
    return msg.text


def render_chat(
    llm: LLMSpec, layout: PromptLayout, messages: Sequence[Message], add_generation_prompt: bool = True
) -> str:
    """Render the bundle's chat template over ``messages`` with image markers in place."""
    if not llm.chat_template:
        raise InputError("this bundle has no chat template; send a raw prompt with --no-template")
    convo = [{"role": m.role, "content": _content(m, layout)} for m in messages]
    try:
        template = _environment().from_string(llm.chat_template)
        return template.render(
            messages=convo,
            add_generation_prompt=add_generation_prompt,
            bos_token=llm.bos_token or "",
            eos_token=llm.eos_token or "",
        )
    except TemplateError as exc:
        raise InputError(f"the chat template failed: {exc}") from None


def detect_content_format(template: str, marker: str) -> str:
    """``parts`` if the template renders list content (image parts), else ``string``."""
    probe = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "PROBE-TEXT"}]}]
    try:
        out = (
            _environment()
            .from_string(template)
            .render(messages=probe, add_generation_prompt=True, bos_token="", eos_token="")
        )
    except Exception:  # a string-only template fails on list content one way or another
        return "string"
    return "parts" if "PROBE-TEXT" in out and marker in out else "string"


def split_prompt(
    text: str,
    layout: PromptLayout,
    n_images: int,
    tokenize: Callable[[str, bool], list[int]],
    add_bos: bool,
) -> list[Chunk]:
    """Cut ``text`` at the image markers: token-id lists and :class:`ImageSlot` chunks.

    ``tokenize(text, add_bos)`` is the LLM's tokenizer; BOS goes on the first piece only.
    """
    pieces = text.split(layout.image_marker)
    found = len(pieces) - 1
    if found != n_images:
        raise InputError(
            f"the prompt has {found} image placeholder(s) {layout.image_marker!r} but {n_images} image(s) were given"
        )
    chunks: list[Chunk] = []
    for i, piece in enumerate(pieces):
        if i > 0:
            if layout.image_prefix:
                chunks.append(tokenize(layout.image_prefix, False))
            chunks.append(ImageSlot(i - 1))
            if layout.image_suffix:
                chunks.append(tokenize(layout.image_suffix, False))
        ids = tokenize(piece, add_bos and i == 0)
        if ids:
            chunks.append(ids)
    return chunks


def starts_with_bos(text: str, bos_token: Optional[str]) -> bool:
    """Whether a rendered template already begins with the BOS token text."""
    return bool(bos_token) and text.startswith(bos_token)
