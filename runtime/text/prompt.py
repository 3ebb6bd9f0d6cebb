"""Prompt building: chat template rendering, image placeholders, and prompt chunks.

A prompt becomes a list of chunks: token ids for text and an image index for each
image, placed where the family's marker (``<image>`` for LLaVA) stands.
"""

from __future__ import annotations

import re
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
    videos: tuple = field(default_factory=tuple)  # videos (edge.video.Video, files, lists of frames)


@dataclass(frozen=True)
class ImageSlot:
    """Where the ``index``-th image of the request goes in the prompt (its whole layout), or with
    ``block`` set, embedding block ``block`` of it (:func:`splice_prompt` placed its layout text)."""

    index: int
    block: Optional[int] = None


@dataclass(frozen=True)
class VideoSlot:
    """Where embedding block ``block`` of the ``index``-th video of the request goes in the prompt."""

    index: int
    block: int


Chunk = Union[list, ImageSlot, VideoSlot]


def _raise(message: str) -> None:
    raise TemplateError(message)


def _environment() -> ImmutableSandboxedEnvironment:
    # Same settings as transformers' chat-template renderer, so templates behave alike.
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.globals["raise_exception"] = _raise
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env


def _content(msg: Message, layout: PromptLayout) -> Any:
    if msg.videos:
        return _video_content(msg, layout)
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


def _video_content(msg: Message, layout: PromptLayout) -> Any:
    """A turn with videos: the media markers where the text has them, else the videos then the images
    before the text (as parts, or as marker text for string templates)."""
    if not layout.video_marker:
        raise InputError("this model cannot take video")
    pieces = _marker_split(msg.text, layout)
    if not any(kind for kind, _ in pieces):
        lead = [("video", "")] * len(msg.videos) + [("image", "")] * len(msg.images)
        pieces = lead + [(None, msg.text)]
    if layout.content_format != "parts":
        marks = {"video": layout.video_marker, "image": layout.image_marker}
        return "".join(marks[kind] if kind else text for kind, text in pieces)
    return [{"type": kind} if kind else {"type": "text", "text": text} for kind, text in pieces if kind or text]


def _marker_split(text: str, layout: PromptLayout) -> list[tuple[Optional[str], str]]:
    """``text`` cut at its image and video markers: ``(None, text)`` and ``("image"|"video", "")`` pieces."""
    marks = [(m, k) for m, k in ((layout.image_marker, "image"), (layout.video_marker, "video")) if m]
    out: list[tuple[Optional[str], str]] = []
    rest = text
    while True:
        hits = [(rest.find(m), m, k) for m, k in marks if m in rest]
        if not hits:
            break
        at, marker, kind = min(hits)
        out += [(None, rest[:at]), (kind, "")]
        rest = rest[at + len(marker) :]
    return out + [(None, rest)]


def render_chat(
    llm: LLMSpec, layout: PromptLayout, messages: Sequence[Message], add_generation_prompt: bool = True
) -> str:
    """Render the bundle's chat template over ``messages`` with image (and video) markers in place.

    A conversation that holds a video uses ``layout.video_chat_template`` when the bundle has one
    (the template the family's processor switches to for videos)."""
    if not llm.chat_template:
        raise InputError("this bundle has no chat template; send a raw prompt with --no-template")
    convo = [{"role": m.role, "content": _content(m, layout)} for m in messages]
    source = llm.chat_template
    if any(m.videos for m in messages) and layout.video_chat_template:
        source = layout.video_chat_template
    try:
        template = _environment().from_string(source)
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
    """Cut ``text`` at the image markers: token-id lists and :class:`ImageSlot` chunks (and
    :class:`VideoSlot` chunks where :func:`expand_videos` put video blocks).

    ``tokenize(text, add_bos)`` is the LLM's tokenizer; BOS goes on the first piece only.
    """
    if "\ue000" in text:  # videos laid out by expand_videos
        return _split_media(text, layout, n_images, tokenize, add_bos)
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


# A video block inside an expanded prompt: private-use characters no tokenizer input carries, cut out
# before tokenizing, so the text on each side is tokenized as HF tokenizes it around its image tokens.
_BLOCK = re.compile("\ue000(\\d+)\\.(\\d+)\ue001")


def expand_videos(text: str, layout: PromptLayout, layouts: Sequence[Sequence[Union[str, int]]]) -> str:
    """``text`` with its ``k``-th video marker replaced by video ``k``'s layout (text pieces and block
    indices), as the family's processor expands the marker into text before tokenizing.

    Raises:
        InputError: the family takes no video, or markers and videos do not pair up.
    """
    if not layout.video_marker:
        raise InputError("this model cannot take video (its bundle has no video marker)")
    found = text.count(layout.video_marker)
    if found != len(layouts):
        raise InputError(
            f"the prompt has {found} video placeholder(s) {layout.video_marker!r} but {len(layouts)} video(s) were given"
        )
    pieces = text.split(layout.video_marker)
    out = pieces[0]
    for k, (lay, after) in enumerate(zip(layouts, pieces[1:])):
        out += "".join(p if isinstance(p, str) else f"\ue000{k}.{p}\ue001" for p in lay) + after
    return out


def _split_media(
    text: str, layout: PromptLayout, n_images: int, tokenize: Callable[[str, bool], list[int]], add_bos: bool
) -> list[Chunk]:
    """:func:`split_prompt` over a prompt whose videos :func:`expand_videos` laid out."""
    chunks: list[Chunk] = []
    n_found = 0
    for i, piece in enumerate(text.split(layout.image_marker)):
        if i > 0:
            chunks += [tokenize(layout.image_prefix, False)] if layout.image_prefix else []
            chunks.append(ImageSlot(i - 1))
            chunks += [tokenize(layout.image_suffix, False)] if layout.image_suffix else []
            n_found += 1
        at = 0
        for m in _BLOCK.finditer(piece):
            ids = tokenize(piece[at : m.start()], add_bos and i == 0 and at == 0)
            chunks += [ids] if ids else []
            chunks.append(VideoSlot(int(m.group(1)), int(m.group(2))))
            at = m.end()
        ids = tokenize(piece[at:], add_bos and i == 0 and at == 0)
        chunks += [ids] if ids else []
    if n_found != n_images:
        raise InputError(
            f"the prompt has {n_found} image placeholder(s) {layout.image_marker!r} but {n_images} image(s) were given"
        )
    return chunks


def splice_prompt(
    text: str,
    layout: PromptLayout,
    layouts: Sequence[Sequence[Union[str, int]]],
    tokenize: Callable[[str, bool], list[int]],
    add_bos: bool,
) -> list[Chunk]:
    """:func:`split_prompt` for images whose layout text is part of the prompt text (a scheme with
    ``inline_text``, e.g. Gemma 3's ``"\n\n<start_of_image>"``): the ``k``-th marker is replaced by
    image ``k``'s layout, each run of text (prompt and layout text joined) is tokenized whole, and
    each embedding block becomes ``ImageSlot(k, block)``. A HF processor expands the marker into
    text and then tokenizes, so text such as ``"user\n"`` + ``"\n\n"`` must merge as it does there.

    Raises:
        InputError: markers and images do not pair up.
    """
    pieces = text.split(layout.image_marker)
    if len(pieces) - 1 != len(layouts):
        raise InputError(
            f"the prompt has {len(pieces) - 1} image placeholder(s) {layout.image_marker!r} but "
            f"{len(layouts)} image(s) were given"
        )
    runs: list = [pieces[0]]
    for k, (lay, after) in enumerate(zip(layouts, pieces[1:])):
        for part in [layout.image_prefix, *lay, layout.image_suffix, after]:
            if not isinstance(part, str):
                runs.append(ImageSlot(k, part))
            elif isinstance(runs[-1], str):
                runs[-1] += part
            else:
                runs.append(part)
    chunks: list[Chunk] = []
    for i, run in enumerate(runs):
        if isinstance(run, ImageSlot):
            chunks.append(run)
        elif ids := tokenize(run, add_bos and i == 0):
            chunks.append(ids)
    return chunks


def starts_with_bos(text: str, bos_token: Optional[str]) -> bool:
    """Whether a rendered template already begins with the BOS token text."""
    return bool(bos_token) and text.startswith(bos_token)
