"""Chat templates as role prefixes/suffixes (edge.chat_format.ChatAffixes): derived from the
family templates, rendering exactly what render_chat renders; templates that cannot be said so
get none, with a reason; the affix renderer refuses what it cannot render."""

from __future__ import annotations

import dataclasses
import json

import pytest
from chat_affixes_support import assert_renders_alike, conversations, layout_for, llm_spec

from edge.errors import InputError
from edge.export.builders.smollm2 import LLAVA_TEMPLATE, SMOLVLM_TEMPLATE
from edge.export.builders.tiny_gemma3 import GEMMA3_TEMPLATE
from edge.export.builders.tiny_qwen2_5_vl import QWEN_VL_TEMPLATE
from edge.manifest import FileEntry, Manifest
from edge.runtime.text.chat_affixes import derive_affixes, render_affixes
from edge.runtime.text.prompt import Message

CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)  # tiny_llama's (SmolLM2's turns)
QWEN_MARKER = "<|vision_start|><|image_pad|><|vision_end|>"
# family -> (template, image marker, bos, eos): the templates the tiny builders give each family
FAMILIES = {
    "llama": (CHATML, "<image>", "<|im_start|>", "<|im_end|>"),
    "llava": (LLAVA_TEMPLATE, "<image>", "<|im_start|>", "<|im_end|>"),
    "llava_next": (LLAVA_TEMPLATE, "<image>", "<|im_start|>", "<|im_end|>"),
    "idefics3": (SMOLVLM_TEMPLATE, "<image>", "<|im_start|>", "<|im_end|>"),
    "smolvlm": (SMOLVLM_TEMPLATE, "<image>", "<|im_start|>", "<|im_end|>"),
    "gemma3": (GEMMA3_TEMPLATE, "<start_of_image>", "<bos>", "<eos>"),
    "qwen2_5_vl": (QWEN_VL_TEMPLATE, QWEN_MARKER, None, "<|im_end|>"),
}


def _derive(family: str):
    template, marker, bos, eos = FAMILIES[family]
    llm, layout = llm_spec(template, bos, eos), layout_for(template, marker)
    affixes, note = derive_affixes(llm, layout)
    return affixes, note, llm, layout


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_family_templates_render_alike_through_affixes(family):
    affixes, note, llm, layout = _derive(family)
    assert affixes is not None and note == "ok", note
    assert assert_renders_alike(affixes, llm, layout, conversations(layout.image_marker)) == 72


def test_gemma3_folds_the_system_text_into_the_first_user_turn_and_trims():
    a, _, _, _ = _derive("gemma3")
    assert (a.bos, a.system_placement, a.no_system) == ("<bos>", "first_user", "")
    assert (a.system.prefix, a.system.suffix, a.system.trim) == ("", "\n\n", False)
    assert (a.user.prefix, a.user.suffix, a.user.trim) == ("<start_of_turn>user\n", "<end_of_turn>\n", True)
    assert (a.assistant.prefix, a.assistant.trim) == ("<start_of_turn>model\n", True)
    assert (a.generation_prompt, a.image_text, a.alternate) == ("<start_of_turn>model\n", "<start_of_image>", True)


def test_smolvlm_turns_that_start_with_an_image_have_their_own_prefix():
    a, _, _, layout = _derive("smolvlm")
    assert (a.bos, a.no_system, a.user.prefix, a.user.image_first_prefix) == ("", "<|im_start|>", "User: ", "User:")
    assert (a.assistant.prefix, a.generation_prompt, a.image_text) == ("Assistant: ", "Assistant:", "<image>")
    text = render_affixes(a, layout, [Message("user", "What?", ("img",))])
    assert text == "<|im_start|>User:<image>What?<end_of_utterance>\nAssistant:"


def test_llava_and_qwen_image_parts():
    llava, _, _, _ = _derive("llava")
    assert (llava.user.prefix, llava.image_text, llava.system.prefix, llava.system.suffix) == (
        "USER: ",
        "<image>\n",
        "",
        "",
    )  # fmt: skip (trim_blocks eats the template's newline after the system text)
    qwen, _, _, _ = _derive("qwen2_5_vl")
    assert (qwen.bos, qwen.image_text, qwen.user.prefix) == ("", QWEN_MARKER, "<|im_start|>user\n")


@pytest.mark.parametrize(
    ("template", "why"),
    [
        ("{% for m in messages %}{% if 'cat' in m['content'] %}CAT{% endif %}[{{ m['content'] }}]{% endfor %}",
         "depends on the conversation"),
        ("{{ strftime_now('%d %b %Y') }}{% for m in messages %}{{ m['content'] }}{% endfor %}", "current date"),
        ("{% for m in messages %}{% if loop.last %}LAST{% endif %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}",
         "rendered differently"),
        ("{% for m in messages %}{{ m['content'] }}{{ m['content'] }}{% endfor %}", "content once"),
        ("{% for m in messages %}{{ m['content'] | upper }}{% endfor %}", "content once"),
        ("{% for m in messages %}{{ m['content'] }}{{ bos_token }}{% endfor %}", "bos_token"),
        ("{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('no system') }}{% endif %}"
         "{{ m['content'] }}{% endfor %}", "fails on a plain conversation"),
    ],
)  # fmt: skip
def test_templates_that_are_not_affixes_get_none_and_say_why(template, why):
    affixes, note = derive_affixes(llm_spec(template), layout_for(template))
    assert affixes is None and why in note


def test_no_template_no_affixes():
    affixes, note = derive_affixes(dataclasses.replace(llm_spec(CHATML), chat_template=None), layout_for(CHATML))
    assert affixes is None and "no chat template" in note


@pytest.mark.parametrize(
    ("convo", "message"),
    [
        ([], "at least one message"),
        ([Message("tool", "x")], "roles"),
        ([Message("user", "a"), Message("system", "b")], "only be the first"),
        ([Message("system", "s", ("img",)), Message("user", "a")], "cannot hold images"),
        ([Message("user", "a", videos=("v",))], "videos"),
        ([Message("user", "a"), Message("user", "b")], "alternate"),
        ([Message("assistant", "a")], "alternate"),
    ],
)
def test_the_affix_renderer_refuses_what_it_cannot_render(convo, message):
    affixes, _, _, layout = _derive("gemma3")
    with pytest.raises(InputError, match=message):
        render_affixes(affixes, layout, convo)


def test_affixes_round_trip_through_manifest_json():
    affixes, _, llm, layout = _derive("gemma3")
    m = Manifest(name="t", family="gemma3", files={"llm.gguf": FileEntry("llm.gguf", 1, "0" * 64)},
                 llm=dataclasses.replace(llm, chat_affixes=affixes), prompt=layout)  # fmt: skip
    data = json.loads(m.to_json())["llm"]["chat_affixes"]
    assert data["user"] == {"prefix": "<start_of_turn>user\n", "suffix": "<end_of_turn>\n",
                            "image_first_prefix": None, "trim": True}  # fmt: skip
    assert Manifest.from_json(m.to_json()).llm.chat_affixes == affixes
