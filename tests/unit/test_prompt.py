"""Prompt building: chat templates, image markers, chunks."""

import pytest

from edge.errors import InputError
from edge.manifest import LLMSpec, PromptLayout
from edge.runtime.text.prompt import ImageSlot, Message, detect_content_format, render_chat, split_prompt

STRING_TPL = "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}</s>{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}"
PARTS_TPL = (
    "{% for m in messages %}{{ m['role'] }}: {% for p in m['content'] %}{% if p['type'] == 'image' %}<image>"
    "{% else %}{{ p['text'] }}{% endif %}{% endfor %}\n{% endfor %}ASSISTANT:"
)


def _llm(tpl):
    return LLMSpec(
        file="x",
        arch="llama",
        dtype="f32",
        n_ctx_train=10,
        n_embd=4,
        n_vocab=10,
        bos_id=1,
        eos_ids=[2],
        add_bos=False,
        chat_template=tpl,
    )


def fake_tokenize(text, add_bos):
    return ([1] if add_bos else []) + [ord(c) for c in text]


def test_detect_content_format():
    assert detect_content_format(STRING_TPL, "<image>") == "string"
    assert detect_content_format(PARTS_TPL, "<image>") == "parts"


def test_string_template_puts_markers_before_text():
    out = render_chat(_llm(STRING_TPL), PromptLayout(), [Message("user", "hi", ("a", "b"))])
    assert out == "<user><image><image>\nhi</s><assistant>"


def test_marker_in_text_is_respected():
    out = render_chat(_llm(STRING_TPL), PromptLayout(), [Message("user", "look <image> here", ("a",))])
    assert out == "<user>look <image> here</s><assistant>"


def test_parts_template():
    out = render_chat(_llm(PARTS_TPL), PromptLayout(content_format="parts"), [Message("user", "hi", ("a",))])
    assert out == "user: <image>hiASSISTANT:"  # trim_blocks eats the newline after a block tag


def test_no_template_is_a_clear_error():
    with pytest.raises(InputError, match="no chat template"):
        render_chat(_llm(None), PromptLayout(), [Message("user", "hi")])


def test_template_errors_are_input_errors():
    bad = "{{ raise_exception('only user and assistant roles') }}"
    with pytest.raises(InputError, match="only user"):
        render_chat(_llm(bad), PromptLayout(), [Message("user", "hi")])


def test_split_prompt_chunks_and_bos():
    layout = PromptLayout(image_marker="<image>", image_prefix="[", image_suffix="]")
    chunks = split_prompt("ab<image>c<image>", layout, 2, fake_tokenize, add_bos=True)
    assert chunks == [[1, 97, 98], [91], ImageSlot(0), [93], [99], [91], ImageSlot(1), [93]]


@pytest.mark.parametrize("n_images", [0, 2])
def test_marker_count_must_match(n_images):
    with pytest.raises(InputError, match="placeholder"):
        split_prompt("x<image>y", PromptLayout(), n_images, fake_tokenize, add_bos=False)
