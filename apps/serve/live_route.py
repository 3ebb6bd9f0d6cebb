"""``POST /v1/edge/live``: one webcam frame and a question from the chat page's live mode.

Not an OpenAI route (the page's own): the body is ``{"image": DATA_URL, "question": TEXT,
"max_tokens": N, "reuse_threshold": T, "audio": {"data": BASE64, "format": "wav"}}``; the answer
streams as server-sent events ``{"delta": TEXT}`` and ends with ``{"done": true, "question", "text",
"tiles", "tiles_encoded", "tiles_reused", "ttft_ms", "reused_tokens", "prompt_tokens"}``, then
``[DONE]``. ``audio`` (the object of a chat ``input_audio`` part) is a spoken question: it is
decoded and transcribed as chat's ``input_audio`` is (``media.decode_audio``, then
``Pipeline.hear`` on the worker, with the server's ``--audio-bundle``), its transcript replaces
``question`` and comes first as ``{"question": TEXT}``. Each frame goes
through the same pipeline as a chat request, so unchanged tiles cost no vision work and the KV
prefix up to the first changed tile is kept; ``reuse_threshold`` applies to this request only
(chat requests keep exact reuse). The page drops frames while an answer runs (on-busy skip).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, AsyncIterator, Callable

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from edge.apps.serve import media
from edge.apps.serve import openai_schema as oa
from edge.errors import EdgeError
from edge.events import FinishEvent

MAX_QUESTION_CHARS = 4000


def live_frames(submit: Callable, config: Any, event_stream: Callable) -> Callable:
    """The endpoint: parse and decode (400s), then stream the answer from the worker."""
    limits = config.limits

    async def call(request: Request) -> Any:
        try:
            body = json.loads(await request.body())
        except (ValueError, RecursionError):
            raise oa.ApiError("the body is not valid JSON") from None
        if not isinstance(body, dict):
            raise oa.ApiError("the body must be a JSON object")
        url, question, spoken = body.get("image"), body.get("question"), body.get("audio")
        if not isinstance(url, str):
            raise oa.ApiError("image must be a data URL string", param="image")
        if spoken is not None:
            if not isinstance(spoken, dict) or not isinstance(spoken.get("data"), str):
                raise oa.ApiError("audio must be an object with base64 data (as input_audio)", param="audio")
            question = ""  # the transcript is the question
        elif not isinstance(question, str) or not question.strip() or len(question) > MAX_QUESTION_CHARS:
            raise oa.ApiError(f"question must be a non-empty string of at most {MAX_QUESTION_CHARS} characters",
                              param="question")  # fmt: skip
        max_tokens = body.get("max_tokens", 64)
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or not 1 <= max_tokens <= limits.max_tokens:
            raise oa.ApiError(f"max_tokens must be an integer from 1 to {limits.max_tokens}", param="max_tokens")
        threshold = body.get("reuse_threshold", 0)
        if not isinstance(threshold, (int, float)) or isinstance(threshold, bool) or not math.isfinite(threshold) \
                or not 0 <= threshold <= 255:  # fmt: skip
            raise oa.ApiError("reuse_threshold must be a number from 0 to 255 (levels)", param="reuse_threshold")

        def decode():
            data = media.image_bytes(url, "image", config.allow_paths)
            image = media.decode_image(data, "image", limits.max_image_pixels)
            if spoken is None:
                return image, None
            fmt = str(spoken.get("format", "wav")).lower()  # as chat's input_audio parts are decoded
            audio = media.decode_audio(media.b64decode(spoken["data"], "audio.data"), fmt, "audio",
                                       limits.max_audio_seconds)  # fmt: skip
            return image, audio

        image, audio = await run_in_threadpool(decode)

        def work(pipe: Any):
            from edge.options import GenerateOptions

            stage = pipe.images
            if stage is None:
                raise oa.ApiError("this model has no vision encoder; live mode needs one", param="image")
            asked = question
            if audio is not None:  # a spoken question: transcribed on the worker, as chat's input_audio
                if pipe.speech is None:
                    raise oa.ApiError("audio: no speech model; start the server with --audio-bundle WHISPER_BUNDLE",
                                      param="audio")  # fmt: skip
                asked = pipe.hear("", [audio]).strip()
                if not asked:
                    raise oa.ApiError("audio: heard no words in the spoken question", param="audio",
                                      code="no_speech")  # fmt: skip
                yield Heard(asked)
            before = stage.reuse_threshold
            stage.set_reuse_threshold(float(threshold))
            try:
                for ev in pipe.stream(asked, [image], GenerateOptions(max_tokens=max_tokens)):
                    yield Finished(asked, ev) if isinstance(ev, FinishEvent) else ev
            finally:
                stage.reuse_threshold = before

        job = submit(work)
        return event_stream(_events(job), job)

    return call


@dataclass(frozen=True)
class Heard:
    """The transcript of a spoken question, sent before the answer."""

    text: str


@dataclass(frozen=True)
class Finished:
    """The end of an answer, with the question it answered."""

    question: str
    event: FinishEvent


async def _events(job: Any) -> AsyncIterator[Any]:
    items, first = job.items(), True
    while True:
        try:
            item = await items.__anext__()
        except StopAsyncIteration:
            break
        except EdgeError as exc:
            if first:  # before any event: a plain 4xx (the caller waits for the first event)
                raise
            yield oa.from_edge_error(exc).body()  # after the transcript: an error event ends the stream
            break
        first = False
        if isinstance(item, Heard):
            yield {"question": item.text}
        elif isinstance(item, Finished):
            ev = item.event
            t = ev.timings
            yield {"done": True, "question": item.question, "text": ev.text, "finish_reason": ev.reason,
                   "tiles": t.tiles_encoded + t.tiles_reused, "tiles_encoded": t.tiles_encoded, "tiles_reused": t.tiles_reused, "ttft_ms": round(t.ttft_ms, 1),
                   "reused_tokens": t.reused_tokens, "prompt_tokens": t.prompt_tokens}  # fmt: skip
        elif item.text:
            yield {"delta": item.text}
    yield None
