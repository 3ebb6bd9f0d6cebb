"""An answer stopped early (Ctrl-C in the chat closes its stream) keeps the KV cache consistent:
the conversation records what was shown, the next turn reuses the cached prefix, and its greedy
answer is the one a fresh pipeline gives on the same conversation."""

from __future__ import annotations

import edge
from edge.options import GenerateOptions
from edge.runtime.text.generate import join
from edge.runtime.text.prompt import Message

THREADS = 2


def test_a_stopped_answer_keeps_the_cache_and_the_next_turn_reuses_it(tiny_llama_bundle):
    pipe = edge.load(tiny_llama_bundle, threads=THREADS)
    chat = pipe.chat()
    stream = chat.send("Tell me a long story.", options=GenerateOptions(max_tokens=200))
    shown = "".join(next(stream).text for _ in range(6))
    stream.close()  # what the CLI does on Ctrl-C, between two tokens
    assert chat.messages == [Message("user", "Tell me a long story."), Message("assistant", shown)]

    second = join(chat.send("And then?", options=GenerateOptions(max_tokens=12)))
    t = second.timings
    assert t.reused_tokens > 0, "the cached prompt of the stopped turn is reused, not wiped"
    assert t.reused_tokens < t.prompt_tokens

    fresh = edge.load(tiny_llama_bundle, threads=THREADS)
    reference = join(fresh.stream_messages(chat.messages[:-1], GenerateOptions(max_tokens=12)))
    assert reference.timings.reused_tokens == 0
    assert second.tokens == reference.tokens, "the cache held only what the conversation says"
    pipe.close()
    fresh.close()


def test_closing_a_stream_before_its_first_token_keeps_the_cache_usable(tiny_llama_bundle):
    pipe = edge.load(tiny_llama_bundle, threads=THREADS)
    first = pipe.stream("Hello", options=GenerateOptions(max_tokens=50))
    next(first)
    first.close()
    again = pipe.generate("Hello", options=GenerateOptions(max_tokens=8))
    assert again.timings.reused_tokens > 0
    fresh = edge.load(tiny_llama_bundle, threads=THREADS)
    assert again.tokens == fresh.generate("Hello", options=GenerateOptions(max_tokens=8)).tokens
    pipe.close()
    fresh.close()
