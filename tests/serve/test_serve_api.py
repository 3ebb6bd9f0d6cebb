"""`edge serve` on a tiny LLaVA bundle with a tiny Whisper bundle, through the official openai client.

Greedy answers equal `edge run` on the same prompt and image; usage, stop sequences, models,
transcription, spoken turns, concurrency, a client that disconnects mid-stream, multi-turn cache
reuse, a full queue (429) and a clean shutdown on SIGTERM.
"""

from __future__ import annotations

import base64
import json
import signal
import threading
import time

import pytest
from conftest import run_cli
from serve_support import Server, image_message

pytest.importorskip("openai")
pytest.importorskip("uvicorn")

PROMPT = "What is in this picture?"


@pytest.fixture(scope="module")
def server(tiny_llava_bundle, tiny_whisper_bundle, tmp_path_factory):
    srv = Server([str(tiny_llava_bundle), "--audio-bundle", str(tiny_whisper_bundle)], tmp_path_factory.mktemp("srv"))
    yield srv
    assert srv.stop() == 0, srv.log.read_text()
    assert "server stopped" in srv.log.read_text()


def edge_run(bundle, *args: str) -> dict:
    proc = run_cli("run", str(bundle), "--json", "--threads", "2", *args)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def reference(tiny_llava_bundle, photo) -> dict:
    return edge_run(tiny_llava_bundle, "--image", str(photo), "--prompt", PROMPT, "-n", "12")


def test_models_and_health(server, tiny_whisper_bundle):
    ids = [m.id for m in server.client().models.list().data]
    assert ids == [server.model, tiny_whisper_bundle.name]
    assert server.health()["status"] == "ok"


def test_chat_with_an_image_equals_edge_run(server, reference, photo):
    out = server.client().chat.completions.create(
        model=server.model, messages=image_message(photo, PROMPT), max_tokens=12, temperature=0
    )
    choice = out.choices[0]
    assert choice.message.content == reference["text"]
    assert choice.finish_reason == ("length" if reference["finish_reason"] != "stop" else "stop")
    assert out.usage.prompt_tokens == reference["timings"]["prompt_tokens"]
    assert out.usage.completion_tokens == len(reference["tokens"])
    assert out.usage.total_tokens == out.usage.prompt_tokens + out.usage.completion_tokens


def test_streamed_chat_equals_edge_run_and_reports_usage(server, reference, photo):
    stream = server.client().chat.completions.create(
        model=server.model, messages=image_message(photo, PROMPT), max_tokens=12, temperature=0, stream=True,
        stream_options={"include_usage": True},
    )  # fmt: skip
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == reference["text"]
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["length"]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == len(reference["tokens"])
    # the same image again: its embeddings come from the cache, the prompt from the KV prefix
    assert chunks[-1].usage.prompt_tokens_details.cached_tokens > 0
    assert chunks[-1].model_extra["timings"]["tiles"] == 0


def test_stop_sequences_end_the_answer_before_them(server, reference, photo):
    answer = reference["text"]
    stop = answer[len(answer) // 2 :][:3]
    expected = answer[: answer.index(stop)]
    client = server.client()
    out = client.chat.completions.create(
        model=server.model, messages=image_message(photo, PROMPT), max_tokens=12, temperature=0, stop=[stop, "\x00"]
    )
    assert out.choices[0].message.content == expected
    assert out.choices[0].finish_reason == "stop"
    stream = client.chat.completions.create(
        model=server.model, messages=image_message(photo, PROMPT), max_tokens=12, temperature=0, stop=stop,
        stream=True,
    )  # fmt: skip
    deltas = [c.choices[0].delta.content or "" for c in stream if c.choices]
    assert "".join(deltas) == expected and all(stop not in d for d in deltas)


def test_plain_completion_equals_edge_run_without_template(server, tiny_llava_bundle):
    ref = edge_run(tiny_llava_bundle, "--no-template", "--prompt", "Once upon a time", "-n", "6")
    out = server.client().completions.create(model=server.model, prompt="Once upon a time", max_tokens=6, temperature=0)
    assert out.choices[0].text == ref["text"]
    assert out.usage.prompt_tokens == ref["timings"]["prompt_tokens"]


def test_transcription_equals_edge_transcribe(server, tiny_whisper_bundle, speech_fixtures):
    wav = next(p for p in sorted(speech_fixtures) if p.endswith("s1_fox.wav"))
    proc = run_cli("transcribe", str(tiny_whisper_bundle), wav, "--json", "--threads", "2")
    assert proc.returncode == 0, proc.stderr
    expected = json.loads(proc.stdout)["text"]
    client = server.client()
    with open(wav, "rb") as f:
        out = client.audio.transcriptions.create(model=tiny_whisper_bundle.name, file=f)
    assert out.text == expected
    with open(wav, "rb") as f:
        verbose = client.audio.transcriptions.create(model="whisper-1", file=f, response_format="verbose_json")
    assert verbose.text == expected and verbose.duration > 1
    with open(wav, "rb") as f:
        assert client.audio.transcriptions.create(model="whisper-1", file=f, response_format="text") == expected


def test_spoken_turn_is_transcribed_into_the_message(server, speech_fixtures):
    wav = next(p for p in sorted(speech_fixtures) if p.endswith("s2_lights.wav"))
    client = server.client()
    with open(wav, "rb") as f:
        transcript = client.audio.transcriptions.create(model="whisper-1", file=f).text
    audio = {"type": "input_audio", "input_audio": {"data": base64.b64encode(open(wav, "rb").read()).decode(),
                                                    "format": "wav"}}  # fmt: skip
    spoken = client.chat.completions.create(
        model=server.model, messages=[{"role": "user", "content": [audio]}], max_tokens=6, temperature=0
    )
    typed = client.chat.completions.create(
        model=server.model, messages=[{"role": "user", "content": transcript}], max_tokens=6, temperature=0
    )
    assert spoken.choices[0].message.content == typed.choices[0].message.content


def test_stateless_multi_turn_chat_reuses_the_cache(server, photo):
    client = server.client()
    history = image_message(photo, "First question?")
    first = client.chat.completions.create(model=server.model, messages=history, max_tokens=5, temperature=0)
    history += [{"role": "assistant", "content": first.choices[0].message.content},
                {"role": "user", "content": "And the second?"}]  # fmt: skip
    second = client.chat.completions.create(model=server.model, messages=history, max_tokens=5, temperature=0)
    cached = second.usage.prompt_tokens_details.cached_tokens
    assert cached >= first.usage.prompt_tokens - 2  # only the new turn (and the last answer) is evaluated
    assert second.model_extra["timings"]["tiles"] == 0 and second.model_extra["timings"]["cache_hits"] >= 1


def test_several_clients_at_once_get_their_own_answers(server, photo, photo2):
    client = server.client()
    asks = [(photo, "One?"), (photo2, "Two?"), (photo, "Three?"), (photo2, "Four?")]

    def ask(item, stream=False):
        out = client.chat.completions.create(
            model=server.model, messages=image_message(*item), max_tokens=6, temperature=0, stream=stream
        )
        return (
            "".join(c.choices[0].delta.content or "" for c in out if c.choices)
            if stream
            else out.choices[0].message.content
        )

    expected = [ask(a) for a in asks]
    got: dict = {}
    threads = [threading.Thread(target=lambda i=i: got.__setitem__(i, ask(asks[i], stream=i % 2 == 1)))
               for i in range(len(asks))]  # fmt: skip
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert [got.get(i) for i in range(len(asks))] == expected


def test_a_client_that_disconnects_stops_its_generation(server, reference, photo):
    client = server.client()
    stream = client.chat.completions.create(
        model=server.model, messages=image_message(photo, PROMPT), max_tokens=900, temperature=0, stream=True
    )
    for i, _ in enumerate(stream):
        if i == 3:
            break
    stream.close()
    assert server.wait_idle(30) < 10
    # the next request is served normally, from a cache that kept the valid prefix
    out = client.chat.completions.create(
        model=server.model, messages=image_message(photo, PROMPT), max_tokens=12, temperature=0
    )
    assert out.choices[0].message.content == reference["text"]
    assert out.usage.prompt_tokens_details.cached_tokens == out.usage.prompt_tokens - 1


def test_full_queue_gives_429_and_sigterm_stops_cleanly(tiny_llava_bundle, photo, tmp_path):
    srv = Server([str(tiny_llava_bundle), "--queue-size", "1", "--ctx", "4096"], tmp_path)
    try:
        client = srv.client()
        long = client.chat.completions.create(
            model=srv.model, messages=image_message(photo, PROMPT), max_tokens=4000, temperature=0, stream=True
        )
        next(iter(long))
        waiting: dict = {}
        t = threading.Thread(target=lambda: waiting.setdefault("status", srv.post("/v1/completions", {
            "prompt": "Hello", "max_tokens": 2, "temperature": 0})[0]))  # fmt: skip
        t.start()
        deadline = time.monotonic() + 30
        while srv.health()["queued"] < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert srv.health() | {"model": None} == {"status": "ok", "model": None, "queued": 1, "running": True}
        status, body = srv.post("/v1/completions", {"prompt": "Hi", "max_tokens": 2})
        assert status == 429 and body["error"]["type"] == "rate_limit_error"
        long.close()
        t.join(60)
        assert waiting["status"] == 200
        # a long generation running, then SIGTERM: it is cancelled and the process ends with 0
        long = client.chat.completions.create(
            model=srv.model, messages=image_message(photo, PROMPT), max_tokens=4000, temperature=0, stream=True
        )
        next(iter(long))
        t0 = time.monotonic()
        assert srv.stop(signal.SIGTERM) == 0, srv.log.read_text()
        assert time.monotonic() - t0 < 30
    finally:
        srv.stop(signal.SIGKILL)
