"""Chat rendering as plain strings (:class:`ChatAffixes`), part of the bundle contract
(``LLMSpec.chat_affixes``): what a runtime without a Jinja engine needs to render a conversation
exactly as the bundle's chat template does. Derived and checked at export time by
:mod:`edge.runtime.text.chat_affixes`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional


@dataclass(frozen=True)
class RoleAffixes:
    """The text a chat template puts around the content of one role's messages (see :class:`ChatAffixes`)."""

    prefix: str  # text before the message's content ("<|im_start|>user\n")
    suffix: str  # text after the message's content ("<|im_end|>\n")
    # "parts" content only: the prefix when the content's first part is an image (SmolVLM's "User:" where a
    # text-first turn has "User: "); None: ``prefix`` in every case
    image_first_prefix: Optional[str] = None
    # each text piece of the content is stripped of surrounding whitespace (Jinja's ``trim`` filter, i.e.
    # Python's ``str.strip()``: every character ``str.isspace()`` accepts, Unicode included); "string"
    # content is stripped whole (image markers in it included), "parts" content text part by text part
    trim: bool = False


ChatSystemPlacement = Literal["turn", "first_user"]


@dataclass(frozen=True)
class ChatAffixes:
    """The chat template as plain strings, so a runtime without a Jinja engine (edge/native) renders
    exactly what :func:`edge.runtime.text.prompt.render_chat` renders. The exporter derives it by
    rendering the template with sentinel contents and checks it on many conversations
    (:mod:`edge.runtime.text.chat_affixes`); a template it cannot express leaves ``LLMSpec.chat_affixes``
    null (``provenance.chat_affixes`` says why) and a native runtime then refuses chat mode.

    Rendering ``messages`` (roles "system", "user", "assistant"; a system message only first, with no
    images; with ``alternate`` the others go user, assistant, user, ... starting with user)::

        out = bos
        if messages[0] is a system message S:  (removed from the list)
            block = system.prefix + content(S) + system.suffix
            "turn": out += block        "first_user": block goes right after the next message's prefix (if any)
        else:
            out += no_system
        for each message M:  out += prefix(M) [+ block, first message, "first_user"] + content(M) + suffix(M)
        if add_generation_prompt:  out += generation_prompt

    ``content(M)`` follows ``PromptLayout.content_format``. "string": M's text, or when M has images
    and its text holds no ``image_marker``, ``image_marker`` repeated once per image + "\n" + text.
    "parts": when M has images and its text holds the marker, the text cut at the markers into
    pieces, each marker an image part and each non-empty piece a text part, in order; otherwise one
    image part per image, then one text part with the whole text (even empty). Image parts render as
    ``image_text``, text parts as their text. ``trim`` and ``image_first_prefix`` as in
    :class:`RoleAffixes`. The rendered text then goes through the same prompt splitting at
    ``image_marker`` as any prompt.
    """

    bos: str  # text the template puts first, its bos_token ("<bos>" for Gemma 3); "" when it puts none
    system: RoleAffixes  # around a system message's text
    user: RoleAffixes  # around a user message's content
    assistant: RoleAffixes  # around an assistant message's content
    generation_prompt: str  # text after the last message when the model is to answer ("<|im_start|>assistant\n")
    # where the system message goes: "turn": a turn of its own before the others; "first_user": inside
    # the first message, right after its prefix (Gemma 3 folds it into the first user turn)
    system_placement: ChatSystemPlacement = "turn"
    # text after ``bos`` when the conversation has no system message (SmolLM2's default system turn)
    no_system: str = ""
    image_text: str = ""  # "parts" content: the text an image part renders as ("<start_of_image>")
    # the template refuses a conversation whose non-system turns do not go user, assistant, user, ...
    alternate: bool = False
