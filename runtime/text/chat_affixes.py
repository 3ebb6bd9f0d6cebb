"""A chat template as role prefixes and suffixes (:class:`~edge.manifest.ChatAffixes`), for runtimes
without a Jinja engine.

:func:`derive_affixes` runs at export time: it renders the bundle's template (through
:func:`~edge.runtime.text.prompt.render_chat`, so with the runtime's own Jinja settings) over
conversations whose contents are sentinel words, reads the text between the sentinels as the
prefix/suffix candidates, and keeps the first candidate that reproduces the template exactly on a
set of ordinary conversations (whitespace-padded texts, images, system or not, several turns, with
and without the generation prompt, and conversations the template refuses). A template whose
output depends on the contents in another way (the date, tools, a "thinking" branch on the last
turn, ...) matches no candidate and gets no affixes. :func:`render_affixes` is the reference for
the native library's renderer: the same rules as the :class:`~edge.manifest.ChatAffixes` docstring.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Optional, Sequence

from edge.errors import InputError
from edge.manifest import ChatAffixes, LLMSpec, PromptLayout, RoleAffixes
from edge.runtime.text.prompt import Message, render_chat

ROLES = ("system", "user", "assistant")


def render_affixes(
    affixes: ChatAffixes, layout: PromptLayout, messages: Sequence[Message], add_generation_prompt: bool = True
) -> str:
    """The prompt text of ``messages`` built from ``affixes`` (what ``render_chat`` gives, for the
    conversations the exporter checked the affixes on).

    Raises:
        InputError: an empty conversation, an unknown role, a system message that is not the first
            or that holds images, a video, or turns that do not alternate when the template requires it.
    """
    msgs = list(messages)
    if not msgs:
        raise InputError("a conversation needs at least one message")
    for m in msgs:
        if m.role not in ROLES:
            raise InputError(f"chat affixes know the roles {list(ROLES)}, not {m.role!r}")
        if m.videos:
            raise InputError("chat affixes do not render videos")
    out = affixes.bos
    block: Optional[str] = None
    if msgs[0].role == "system":
        system = msgs.pop(0)
        if system.images:
            raise InputError("a system message cannot hold images")
        block = affixes.system.prefix + _content_text(system, layout, affixes, affixes.system)
        block += affixes.system.suffix
        if affixes.system_placement == "turn":
            out, block = out + block, None
    else:
        out += affixes.no_system
    for i, m in enumerate(msgs):
        if m.role == "system":
            raise InputError("a system message can only be the first message")
        if affixes.alternate and m.role != ("user" if i % 2 == 0 else "assistant"):
            raise InputError("this chat template needs turns that alternate user/assistant, starting with user")
        role: RoleAffixes = getattr(affixes, m.role)
        parts = _parts(m, layout) if layout.content_format == "parts" else None
        first_image = bool(parts) and parts[0] is None
        out += role.image_first_prefix if first_image and role.image_first_prefix is not None else role.prefix
        if i == 0 and block is not None:
            out += block
        out += _content_text(m, layout, affixes, role) + role.suffix
    return out + (affixes.generation_prompt if add_generation_prompt else "")


def _parts(m: Message, layout: PromptLayout) -> list[Optional[str]]:
    """A message's "parts" content: ``None`` for an image part, a string for a text part
    (the rule of ``prompt._content``, written again from the ChatAffixes docstring)."""
    if m.images and layout.image_marker in m.text:
        out: list[Optional[str]] = []
        for i, piece in enumerate(m.text.split(layout.image_marker)):
            out += ([None] if i else []) + ([piece] if piece else [])
        return out
    return [None] * len(m.images) + [m.text]


def _content_text(m: Message, layout: PromptLayout, affixes: ChatAffixes, role: RoleAffixes) -> str:
    if layout.content_format == "parts":
        texts = (affixes.image_text if p is None else (p.strip() if role.trim else p) for p in _parts(m, layout))
        return "".join(texts)
    text = m.text
    if m.images and layout.image_marker not in text:
        text = layout.image_marker * len(m.images) + "\n" + text
    return text.strip() if role.trim else text


class _NotAffixes(Exception):
    """The template's output does not split into affixes (the message says where)."""


def _cut(text: str, sentinels: Sequence[str]) -> list[str]:
    """``text`` cut at ``sentinels`` (each exactly once, in this order): len(sentinels) + 1 pieces."""
    pieces, rest = [], text
    for s in sentinels:
        if text.count(s) != 1 or s not in rest:
            raise _NotAffixes("the template does not render each message's content once, as given")
        head, rest = rest.split(s, 1)
        pieces.append(head)
    return pieces + [rest]


def _after(text: str, head: str, what: str) -> str:
    if not text.startswith(head):
        raise _NotAffixes(f"the text around {what} depends on the conversation")
    return text[len(head) :]


def _before(text: str, tail: str, what: str) -> str:
    if not text.endswith(tail):
        raise _NotAffixes(f"the text around {what} depends on the conversation")
    return text[: len(text) - len(tail)]


# Sentinel contents: lowercase words no template changes (Jinja's trim leaves them alone) and no
# role, token or template text contains.
_U, _U2, _A, _S = "edgesntlua", "edgesntlub", "edgesntlaa", "edgesntlsa"
_BOS = "edgesntlbos"


def _candidates(llm: LLMSpec, layout: PromptLayout) -> list[ChatAffixes]:
    """Every affix set the sentinel renders allow (placements, trims, alternation)."""

    def render(msgs: list[Message], agp: bool = False, spec: LLMSpec = llm) -> str:
        try:
            return render_chat(spec, layout, msgs, add_generation_prompt=agp)
        except Exception as exc:  # noqa: BLE001 - any failure of the template means "not affixes"
            raise _NotAffixes(f"the template fails on a plain conversation ({str(exc)[:80]})") from None

    def u(text: str, images: tuple = ()) -> Message:
        return Message("user", text, images)

    probe = render([u(_U)], spec=dataclasses.replace(llm, bos_token=_BOS))
    if probe.count(_BOS) > 1 or (_BOS in probe and not probe.startswith(_BOS)):
        raise _NotAffixes("the template puts bos_token somewhere else than first")
    bos = (llm.bos_token or "") if _BOS in probe else ""

    def cut(msgs: list[Message], sentinels: Sequence[str], agp: bool = False) -> list[str]:
        return _cut(_after(render(msgs, agp), bos, "bos_token"), sentinels)

    lead, user_suffix = cut([u(_U)], [_U])
    lead_g, tail_g = cut([u(_U)], [_U], agp=True)
    if lead_g != lead:
        raise _NotAffixes("the generation prompt changes the text before the first message")
    generation_prompt = _after(tail_g, user_suffix, "the generation prompt")
    _, between, asst_suffix = cut([u(_U), Message("assistant", _A)], [_U, _A])
    asst_prefix = _after(between, user_suffix, "an assistant turn")
    pieces = cut([u(_U), Message("assistant", _A), u(_U2)], [_U, _A, _U2])
    if pieces[0] != lead or pieces[3] != user_suffix:
        raise _NotAffixes("the first or last turn is rendered differently from the others")
    user_prefix = _after(pieces[2], asst_suffix, "a second user turn")
    no_system = _before(lead, user_prefix, "the first user turn")
    sys_lead, sys_between, sys_tail = cut([Message("system", _S), u(_U)], [_S, _U])
    if sys_tail != user_suffix:
        raise _NotAffixes("a system message changes the text after the user turn")
    placements: list[tuple[str, str, str]] = []
    if sys_between.endswith(user_prefix):
        placements.append(("turn", sys_lead, _before(sys_between, user_prefix, "the system turn")))
    if sys_lead.startswith(user_prefix):
        placements.append(("first_user", _after(sys_lead, user_prefix, "the system text"), sys_between))
    if not placements:
        raise _NotAffixes("the system message is placed in a way affixes cannot say")
    image_text, user_first, asst_first = "", None, None
    if layout.content_format == "parts":
        image_text = cut([u(_U + layout.image_marker + _U2, ("image",))], [_U, _U2])[1]
        head = cut([u(_U, ("image",))], [_U])[0]
        user_first = _before(_after(head, no_system, "an image-first user turn"), image_text, "an image part")
        mid = cut([u(_U), Message("assistant", _A, ("image",))], [_U, _A])[1]
        asst_first = _before(_after(mid, user_suffix, "an image-first assistant turn"), image_text, "an image part")
    out = []
    for (placement, sys_prefix, sys_suffix), alternate, (t_sys, t_user, t_asst) in itertools.product(
        placements, (False, True), itertools.product((False, True), repeat=3)
    ):
        out.append(
            ChatAffixes(
                bos=bos,
                system=RoleAffixes(sys_prefix, sys_suffix, None, t_sys),
                user=RoleAffixes(user_prefix, user_suffix, None if user_first == user_prefix else user_first, t_user),
                assistant=RoleAffixes(
                    asst_prefix, asst_suffix, None if asst_first == asst_prefix else asst_first, t_asst
                ),
                generation_prompt=generation_prompt,
                system_placement=placement,  # type: ignore[arg-type]
                no_system=no_system,
                image_text=image_text,
                alternate=alternate,
            )
        )
    return out


def _checks(marker: str) -> tuple[list[list[Message]], list[list[Message]]]:
    """The conversations every derived affix set must render exactly as the template does: ordinary
    ones, and ones whose turns do not alternate (which some templates refuse)."""
    img = ("image",)
    s = Message("system", "You are terse.")
    s_pad = Message("system", "  Be brief. \n")
    u1, u2 = Message("user", "What is this?", img), Message("user", " And now?  ")
    u_mark = Message("user", f"{marker}Left {marker} right\n", ("a", "b"))
    u_pad = Message("user", "\n tell me more\t")
    a1, a2 = Message("assistant", "A cat."), Message("assistant", "  It sits. \n")
    # texts that templates with "thinking" branches cut or move (their content-dependent rules)
    a_think = Message("assistant", "<think>Let me see.</think>\n\nA dog.")
    good = [
        [u1], [u2], [u_mark], [s, u1], [s_pad, u_pad], [s], [u1, a1], [u1, a2, u_pad],
        [s, u2, a1, u_mark, a2], [s_pad, u_mark, a2, u1, a1], [u_pad, Message("assistant", "Look:", img)],
        [u1, a_think, u2], [s, u2, a_think],
    ]  # fmt: skip
    bad = [[u1, u2], [a1], [u1, a1, a2], [s, a1, u1]]
    return good, bad


def _attempt(fn, *args) -> Optional[str]:
    try:
        return fn(*args)
    except Exception:  # noqa: BLE001 - a refusal either way is the same answer
        return None


def derive_affixes(llm: LLMSpec, layout: PromptLayout) -> tuple[Optional[ChatAffixes], str]:
    """The affixes that reproduce ``llm.chat_template`` under ``layout``, and a one-line note:
    ``"ok"``, or why the template cannot be said as affixes (then the affixes are None)."""
    source = llm.chat_template
    if not source:
        return None, "the model has no chat template"
    if "strftime_now" in source:
        return None, "the template renders the current date"
    try:
        candidates = _candidates(llm, layout)
    except _NotAffixes as exc:
        return None, str(exc)
    good, bad = _checks(layout.image_marker)
    checks = [(c, g, _attempt(render_chat, llm, layout, c, g)) for c in good + bad for g in (False, True)]
    if any(want is None for _, _, want in checks[: 2 * len(good)]):
        return None, "the template refuses an ordinary conversation (e.g. one with a system message or images)"
    for cand in candidates:
        if all(_attempt(render_affixes, cand, layout, c, g) == want for c, g, want in checks):
            return cand, "ok"
    return None, "the template's text depends on the conversation beyond role prefixes and suffixes"
