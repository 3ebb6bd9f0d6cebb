"""`edge serve` on the default model (SmolLM2-135M-Instruct, real weights): greedy answers through the
official openai client equal `edge run`, and a stateless multi-turn chat only evaluates its new turn."""

from __future__ import annotations

import json

import pytest
from conftest import run_cli
from serve_support import Server

pytest.importorskip("openai")
pytest.importorskip("uvicorn")
pytestmark = pytest.mark.slow

QUESTION = "What is the capital of France?"


@pytest.fixture(scope="module")
def server(smollm2_bundle, tmp_path_factory):
    srv = Server([str(smollm2_bundle)], tmp_path_factory.mktemp("smollm2-srv"))
    yield srv
    assert srv.stop() == 0


def test_greedy_chat_equals_edge_run(server, smollm2_bundle):
    proc = run_cli("run", str(smollm2_bundle), "--prompt", QUESTION, "-n", "24", "--json", "--threads", "2")
    assert proc.returncode == 0, proc.stderr
    ref = json.loads(proc.stdout)
    client = server.client()
    messages = [{"role": "user", "content": QUESTION}]
    out = client.chat.completions.create(model=server.model, messages=messages, max_tokens=24, temperature=0)
    assert out.choices[0].message.content == ref["text"]
    assert "Paris" in ref["text"]
    assert out.usage.prompt_tokens == ref["timings"]["prompt_tokens"]
    assert out.usage.completion_tokens == len(ref["tokens"])
    stream = client.chat.completions.create(
        model=server.model, messages=messages, max_tokens=24, temperature=0, stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == ref["text"]


def test_multi_turn_chat_only_evaluates_the_new_turn(server):
    client = server.client()
    history = [{"role": "system", "content": "You are brief."}, {"role": "user", "content": QUESTION}]
    turns = []
    for follow_up in ("And of Italy?", "And of Spain?"):
        out = client.chat.completions.create(model=server.model, messages=history, max_tokens=16, temperature=0)
        turns.append(out.usage)
        history += [{"role": "assistant", "content": out.choices[0].message.content},
                    {"role": "user", "content": follow_up}]  # fmt: skip
    out = client.chat.completions.create(model=server.model, messages=history, max_tokens=16, temperature=0)
    turns.append(out.usage)
    for before, after in zip(turns, turns[1:]):
        assert after.prompt_tokens_details.cached_tokens >= before.prompt_tokens - 2
        assert after.prompt_tokens - after.prompt_tokens_details.cached_tokens < 40  # the new turn only
