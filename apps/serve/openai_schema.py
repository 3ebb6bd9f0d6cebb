"""OpenAI's request and response shapes <-> the runtime's messages, options and events.

Requests are checked by hand rather than by a schema library so that every refusal is one
line in OpenAI's error format (``{"error": {"message", "type", "param", "code"}}``) naming the
field. Media parts are only checked for shape here; ``media`` decodes them under the limits.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Optional

from edge.errors import ContextOverflowError, EdgeError, InputError
from edge.events import FinishEvent, Timings
from edge.options import GenerateOptions, SamplingOptions

ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}
UNSUPPORTED = ("tools", "functions", "tool_choice", "function_call", "logit_bias", "top_logprobs", "suffix", "echo")


class ApiError(EdgeError):
    """A request the server refuses: an HTTP status and OpenAI's error fields."""

    def __init__(
        self,
        message: str,
        status: int = 400,
        type: str = "invalid_request_error",
        param: Optional[str] = None,
        code: Optional[str] = None,
    ) -> None:
        super().__init__(message)
        self.status, self.type, self.param, self.code = status, type, param, code

    def body(self) -> dict:
        """The JSON body of the error response."""
        return {"error": {"message": str(self), "type": self.type, "param": self.param, "code": self.code}}


def from_edge_error(exc: EdgeError) -> ApiError:
    """The API error for an error raised by the runtime while answering."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, ContextOverflowError):
        return ApiError(str(exc), param="messages", code="context_length_exceeded")
    if isinstance(exc, InputError):
        return ApiError(str(exc))
    return ApiError(str(exc), status=500, type="server_error")


@dataclass
class Part:
    """One piece of a message, in order: ``text`` (a str), ``image`` (bytes, then a decoded
    image) or ``audio`` (bytes and format, then ``(samples, rate)``)."""

    kind: str
    value: Any
    param: str
    format: str = ""


@dataclass
class Turn:
    """One message: its runtime role and its parts."""

    role: str
    parts: list[Part] = field(default_factory=list)


@dataclass
class ChatRequest:
    """A checked ``/v1/chat/completions`` (``turns``) or ``/v1/completions`` (``prompt``) request."""

    model: str
    options: GenerateOptions
    stream: bool = False
    include_usage: bool = False
    turns: list[Turn] = field(default_factory=list)
    prompt: Optional[str] = None


def _get(body: dict, name: str, kinds: tuple, default: Any = None) -> Any:
    value = body.get(name, default)
    if value is None:
        return default
    if isinstance(value, bool) and bool not in kinds:
        raise ApiError(f"{name} must be {_kinds(kinds)}, got a boolean", param=name)
    if not isinstance(value, kinds):
        raise ApiError(f"{name} must be {_kinds(kinds)}, got {type(value).__name__}", param=name)
    return value


def _kinds(kinds: tuple) -> str:
    names = {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "an array",
        dict: "an object",
    }
    return " or ".join(names.get(k, k.__name__) for k in kinds if not (k is int and float in kinds))


def _options(body: dict, model_id: str, limits, default_tokens: Optional[int], template: bool) -> tuple:
    if not isinstance(body, dict):
        raise ApiError("the request body must be a JSON object")
    model = _get(body, "model", (str,), model_id)
    if model != model_id:
        raise ApiError(f"the model {model!r} does not exist; this server has {model_id!r}", 404, param="model",
                       code="model_not_found")  # fmt: skip
    for name in UNSUPPORTED:
        if body.get(name) not in (None, [], {}, False, ""):
            raise ApiError(f"{name} is not supported by this server", param=name, code="unsupported_parameter")
    if body.get("logprobs") not in (None, False):
        raise ApiError("logprobs are not supported by this server", param="logprobs", code="unsupported_parameter")
    fmt = _get(body, "response_format", (dict,), {})
    if fmt.get("type", "text") != "text":
        raise ApiError("only the text response format is supported", param="response_format")
    if _get(body, "n", (int,), 1) != 1:
        raise ApiError("n must be 1: this server returns one choice", param="n")
    tokens = _get(body, "max_completion_tokens", (int,), None)
    name = "max_completion_tokens"
    if tokens is None:
        tokens, name = _get(body, "max_tokens", (int,), None), "max_tokens"
    if tokens is None:
        tokens = default_tokens or limits.max_tokens
    if not 1 <= tokens <= limits.max_tokens:
        raise ApiError(f"{name} must be between 1 and {limits.max_tokens}, got {tokens}", param=name)
    temperature = float(_get(body, "temperature", (int, float), 1.0))
    if not 0.0 <= temperature <= 2.0:
        raise ApiError(f"temperature must be between 0 and 2, got {temperature}", param="temperature")
    top_p = float(_get(body, "top_p", (int, float), 1.0))
    if not 0.0 < top_p <= 1.0:
        raise ApiError(f"top_p must be in (0, 1], got {top_p}", param="top_p")
    top_k = _get(body, "top_k", (int,), 0)  # an extension (llama-server has it too)
    seed = _get(body, "seed", (int,), None)
    if seed is not None and not 0 <= seed < 2**63:
        raise ApiError(f"seed must be a non-negative 64-bit integer, got {seed}", param="seed")
    stop = _get(body, "stop", (str, list), [])
    stop = [stop] if isinstance(stop, str) else stop
    if len(stop) > limits.max_stop or not all(isinstance(s, str) and s for s in stop):
        raise ApiError(f"stop must be a string or up to {limits.max_stop} non-empty strings", param="stop")
    stream = _get(body, "stream", (bool,), False)
    include_usage = bool(_get(body, "stream_options", (dict,), {}).get("include_usage", False))
    try:
        sampling = SamplingOptions(temperature=temperature, top_k=max(top_k, 0), top_p=top_p, seed=seed)
        options = GenerateOptions(max_tokens=tokens, sampling=sampling, template=template, stop=tuple(stop))
    except InputError as exc:
        raise ApiError(str(exc)) from None
    return model, options, stream, include_usage


def parse_chat(body: Any, model_id: str, limits) -> ChatRequest:
    """Check a chat completion request; its media parts stay undecoded bytes."""
    model, options, stream, usage = _options(body, model_id, limits, None, True)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ApiError("messages must be a non-empty array of messages", param="messages")
    turns, images, audio = [], 0, 0
    for i, msg in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(msg, dict):
            raise ApiError(f"{where} must be an object", param=where)
        role = msg.get("role")
        if role not in ROLES:
            raise ApiError(f"{where}.role must be one of {', '.join(ROLES)}, got {role!r}", param=f"{where}.role")
        turn = Turn(ROLES[role], _parts(msg.get("content"), f"{where}.content", role))
        images += sum(p.kind == "image" for p in turn.parts)
        audio += sum(p.kind == "audio" for p in turn.parts)
        turns.append(turn)
    if images > limits.max_images:
        raise ApiError(f"the request has {images} images, more than the limit of {limits.max_images}", param="messages")
    if turns[-1].role == "assistant":
        raise ApiError("the last message must not be the assistant's (continuing an answer is not supported)",
                       param="messages")  # fmt: skip
    return ChatRequest(model, options, stream, usage, turns=turns)


def _parts(content: Any, where: str, role: str) -> list[Part]:
    if isinstance(content, str):
        return [Part("text", content, where)]
    if content is None and role == "assistant":
        return []
    if not isinstance(content, list):
        raise ApiError(f"{where} must be a string or an array of content parts", param=where)
    parts = []
    for j, part in enumerate(content):
        at = f"{where}[{j}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            parts.append(Part("text", part["text"], at))
        elif kind in ("image_url", "input_audio") and role != "user":
            raise ApiError(f"{at}: only user messages may carry {kind} parts", param=at)
        elif kind == "image_url":
            url = part.get("image_url")
            url = url.get("url") if isinstance(url, dict) else url
            if not isinstance(url, str):
                raise ApiError(f"{at}.image_url.url must be a string", param=f"{at}.image_url")
            parts.append(Part("image", url, f"{at}.image_url"))
        elif kind == "input_audio":
            audio = part.get("input_audio")
            if not isinstance(audio, dict) or not isinstance(audio.get("data"), str):
                raise ApiError(f"{at}.input_audio must be an object with base64 data", param=f"{at}.input_audio")
            parts.append(Part("audio", audio["data"], f"{at}.input_audio", str(audio.get("format", "wav")).lower()))
        else:
            raise ApiError(f"{at} must be a text, image_url or input_audio part", param=at)
    return parts


def parse_completion(body: Any, model_id: str, limits) -> ChatRequest:
    """Check a plain completion request (the prompt is sent as is, without the chat template)."""
    model, options, stream, usage = _options(body, model_id, limits, 16, False)
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1:
        prompt = prompt[0]
    if not isinstance(prompt, str) or not prompt:
        raise ApiError("prompt must be a non-empty string (one prompt per request)", param="prompt")
    return ChatRequest(model, options, stream, usage, prompt=prompt)


# --- responses -------------------------------------------------------------------------------
FINISH = {"stop": "stop", "length": "length", "context": "length"}


def new_id(prefix: str) -> str:
    """A response id in OpenAI's style."""
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def usage(ev: FinishEvent) -> dict:
    """OpenAI's usage object; the prompt tokens the KV cache already held are ``cached_tokens``."""
    t = ev.timings
    return {
        "prompt_tokens": t.prompt_tokens,
        "completion_tokens": len(ev.tokens),
        "total_tokens": t.prompt_tokens + len(ev.tokens),
        "prompt_tokens_details": {"cached_tokens": t.reused_tokens},
    }


def timings(t: Timings) -> dict:
    """The runtime's timings of one answer (an extension field, as llama-server's ``timings``)."""
    out = t.as_dict()
    out.pop("image_plans", None)
    return out


def chat_response(rid: str, model: str, ev: FinishEvent) -> dict:
    """A whole ``chat.completion`` object."""
    return {
        "id": rid,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": ev.text},
                "logprobs": None,
                "finish_reason": FINISH.get(ev.reason, "stop"),
            }
        ],
        "usage": usage(ev),
        "timings": timings(ev.timings),
    }


def chat_chunk(rid: str, model: str, delta: dict, finish: Optional[str] = None, **extra: Any) -> dict:
    """One ``chat.completion.chunk`` of a stream (``choices`` empty for the final usage chunk)."""
    choices = [] if delta is None else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
    return {"id": rid, "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
            "choices": choices, **extra}  # fmt: skip


def completion_response(rid: str, model: str, text: str, finish: Optional[str], ev: Optional[FinishEvent]) -> dict:
    """A ``text_completion`` object, whole or as one chunk of a stream."""
    out = {
        "id": rid,
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish}],
    }
    if ev is not None:
        out.update(usage=usage(ev), timings=timings(ev.timings))
    return out
