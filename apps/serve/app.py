"""The routes of ``edge serve`` (Starlette): the OpenAI API, ``/health`` and the chat page.

Starlette (the core FastAPI is built on) with uvicorn: routes are a handful and validated by
hand in OpenAI's error format, so FastAPI's pydantic layer would add nothing, and its generated
docs page loads scripts from a CDN, which an offline server must not serve.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from importlib import resources
from typing import Any, AsyncIterator, Callable

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from edge.apps.serve import media
from edge.apps.serve import openai_schema as oa
from edge.apps.serve.config import ServeConfig
from edge.apps.serve.guard import Guard
from edge.apps.serve.live_route import live_frames
from edge.apps.serve.model_queue import Job, Worker, messages
from edge.errors import EdgeError
from edge.events import FinishEvent

STATIC = resources.files("edge.apps.serve") / "static"
# the page may talk to this server only, and load nothing from anywhere else
PAGE_CSP = (
    "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob: mediastream:; "
    "connect-src 'self'; style-src 'self'; script-src 'self'; frame-ancestors 'none'"
)


def error_response(err: oa.ApiError) -> JSONResponse:
    """OpenAI's error JSON with the error's status."""
    return JSONResponse(err.body(), status_code=err.status)


class EventStream:
    """A server-sent-events response that cancels its job when the client goes away."""

    def __init__(self, events: AsyncIterator[dict], job: Job) -> None:
        self.events, self.job = events, job

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            self.job.cancel.set()

        watcher = asyncio.create_task(watch())
        headers = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
        try:
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            async for event in self.events:
                data = "[DONE]" if event is None else json.dumps(event, ensure_ascii=False)
                await send({"type": "http.response.body", "body": f"data: {data}\n\n".encode(), "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:  # the client closed the connection under us
            pass
        finally:
            self.job.cancel.set()  # a no-op once the job is done
            watcher.cancel()


def build_app(pipeline: Any, config: ServeConfig, model_id: str, audio_id: str | None = None) -> Any:
    """The ASGI app (wrapped in :class:`Guard`) serving ``pipeline`` through one :class:`Worker`."""
    worker = Worker(pipeline, config.queue_size, config.no_cache)
    limits = config.limits

    def submit(work: Callable) -> Job:
        return worker.submit(Job(work, time.monotonic() + limits.request_timeout_s))

    async def body_json(request: Request) -> Any:
        raw = await request.body()
        try:
            return json.loads(raw)
        except (ValueError, RecursionError) as exc:
            raise oa.ApiError(f"the body is not valid JSON: {' '.join(str(exc).split())[:120]}") from None

    async def decode(turns: list) -> None:
        def work() -> None:
            for turn in turns:
                for part in turn.parts:
                    if part.kind == "image":
                        data = media.image_bytes(part.value, part.param, config.allow_paths)
                        part.value = media.decode_image(data, part.param, limits.max_image_pixels)
                    elif part.kind == "audio":
                        if pipeline.speech is None:
                            raise oa.ApiError(f"{part.param}: no speech model; start the server with --audio-bundle "
                                              "WHISPER_BUNDLE", param=part.param)  # fmt: skip
                        data = media.b64decode(part.value, part.param)
                        part.value = media.decode_audio(data, part.format, part.param, limits.max_audio_seconds)

        await run_in_threadpool(work)

    async def wait(request: Request, job: Job) -> list:
        """Everything the job yields; the job is cancelled if the client goes away first."""
        watcher = asyncio.create_task(_watch(request, job))
        try:
            return [item async for item in job.items()]
        finally:
            watcher.cancel()
            job.cancel.set()

    async def chat(request: Request) -> Any:
        req = oa.parse_chat(await body_json(request), model_id, limits)
        await decode(req.turns)

        def work(pipe: Any):
            return pipe.stream_messages(messages(pipe, req.turns), req.options)

        return await answer(request, req, submit(work), chat=True)

    async def completions(request: Request) -> Any:
        req = oa.parse_completion(await body_json(request), model_id, limits)
        return await answer(request, req, submit(lambda pipe: pipe.stream(req.prompt, (), req.options)), chat=False)

    async def answer(request: Request, req: oa.ChatRequest, job: Job, chat: bool) -> Any:
        rid = oa.new_id("chatcmpl" if chat else "cmpl")
        if not req.stream:
            finish = next(ev for ev in await wait(request, job) if isinstance(ev, FinishEvent))
            if chat:
                return JSONResponse(oa.chat_response(rid, model_id, finish))
            return JSONResponse(oa.completion_response(rid, model_id, finish.text, oa.FINISH[finish.reason], finish))
        return EventStream(stream_events(rid, req, job, chat), job)

    async def stream_events(rid: str, req: oa.ChatRequest, job: Job, chat: bool) -> AsyncIterator[dict]:
        items = job.items()
        try:
            first = await items.__anext__()  # errors before the first token are still a plain status code
        except StopAsyncIteration:
            return
        if chat:
            yield oa.chat_chunk(rid, model_id, {"role": "assistant", "content": ""})
        try:
            ev = first
            while True:
                if isinstance(ev, FinishEvent):
                    reason = oa.FINISH.get(ev.reason, "stop")
                    if chat:
                        yield oa.chat_chunk(rid, model_id, {}, reason)
                        if req.include_usage:
                            yield oa.chat_chunk(rid, model_id, None, usage=oa.usage(ev), timings=oa.timings(ev.timings))
                    else:
                        usage_ev = ev if req.include_usage else None
                        yield oa.completion_response(rid, model_id, "", reason, usage_ev)
                elif ev.text:
                    yield (
                        oa.chat_chunk(rid, model_id, {"content": ev.text})
                        if chat
                        else oa.completion_response(rid, model_id, ev.text, None, None)
                    )
                ev = await items.__anext__()
        except StopAsyncIteration:
            pass
        except EdgeError as exc:
            yield oa.from_edge_error(exc).body()
        yield None

    async def first_item_or_error(request: Request, call: Callable) -> Any:
        try:
            response = await call(request)
        except EdgeError as exc:
            return error_response(oa.from_edge_error(exc))
        if isinstance(response, EventStream):
            # wait for the first event, so that a refusal (context overflow...) is a plain 4xx
            agen = response.events
            watcher = asyncio.create_task(_watch(request, response.job))
            try:
                first = await agen.__anext__()
            except EdgeError as exc:
                response.job.cancel.set()
                return error_response(oa.from_edge_error(exc))
            except StopAsyncIteration:
                return error_response(oa.ApiError("the request was cancelled", 503, type="server_error"))
            finally:
                watcher.cancel()
            response.events = _prepend(first, agen)
        return response

    async def transcriptions(request: Request) -> Any:
        if pipeline.speech is None or audio_id is None:
            raise oa.ApiError("no speech model; start the server with --audio-bundle WHISPER_BUNDLE", 400,
                              param="model")  # fmt: skip
        async with request.form(max_files=1, max_fields=16) as form:
            upload = form.get("file")
            if upload is None or isinstance(upload, str):
                raise oa.ApiError("file is required (multipart upload of the audio)", param="file")
            data = await upload.read()
            model = form.get("model") or audio_id
            fmt = str(form.get("response_format") or "json")
            language = form.get("language") or None
        if model not in (audio_id, "whisper-1"):
            raise oa.ApiError(f"the model {model!r} does not exist; this server has {audio_id!r}", 404,
                              param="model", code="model_not_found")  # fmt: skip
        if fmt not in ("json", "text", "verbose_json"):
            raise oa.ApiError("response_format must be json, text or verbose_json", param="response_format")
        kind = (upload.filename or "audio.wav").rsplit(".", 1)[-1].lower()
        kind = kind if kind in media.AUDIO_FORMATS else "wav"
        audio = await run_in_threadpool(media.decode_audio, data, kind, "file", limits.max_audio_seconds)

        def work(pipe: Any):
            from edge.options import TranscribeOptions

            yield pipe.speech.transcribe(audio, TranscribeOptions(language=language))

        result = (await wait(request, submit(work)))[0]
        if fmt == "text":
            return PlainTextResponse(result.text)
        if fmt == "json":
            return JSONResponse({"text": result.text})
        segments = [{"id": i, "start": s.start, "end": s.end, "text": s.text, "tokens": s.tokens,
                     "avg_logprob": s.avg_logprob, "no_speech_prob": s.no_speech_prob}
                    for i, s in enumerate(result.segments)]  # fmt: skip
        body = {"task": "transcribe", "language": result.language, "duration": result.duration,
                "text": result.text, "segments": segments}  # fmt: skip
        return JSONResponse(body)

    async def models(request: Request) -> Any:
        ids = [model_id] + ([audio_id] if audio_id else [])
        data = [{"id": i, "object": "model", "created": 0, "owned_by": "edge"} for i in ids]
        return JSONResponse({"object": "list", "data": data})

    async def health(request: Request) -> Any:
        return JSONResponse({"status": "ok", "model": model_id, "queued": worker.queued,
                             "running": worker.running is not None})  # fmt: skip

    async def page(request: Request) -> Any:
        return FileResponse(str(STATIC / "index.html"), headers={"content-security-policy": PAGE_CSP})

    def api(call: Callable) -> Callable:
        async def endpoint(request: Request) -> Any:
            return await first_item_or_error(request, call)

        return endpoint

    async def http_error(request: Request, exc: HTTPException) -> Response:
        kind = "not_found" if exc.status_code == 404 else None
        return error_response(oa.ApiError(str(exc.detail), exc.status_code, code=kind))

    async def internal_error(request: Request, exc: Exception) -> Response:
        return error_response(oa.ApiError(f"internal error ({type(exc).__name__})", 500, type="server_error"))

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        yield
        await run_in_threadpool(worker.stop)  # after uvicorn closed the connections (or gave up waiting)

    routes = [
        Route("/", page),
        Route("/health", health),
        Route("/v1/models", models),
        Route("/v1/chat/completions", api(chat), methods=["POST"]),
        Route("/v1/completions", api(completions), methods=["POST"]),
        Route("/v1/audio/transcriptions", api(transcriptions), methods=["POST"]),
        Route("/v1/edge/live", api(live_frames(submit, config, EventStream)), methods=["POST"]),  # the live mode
        Mount("/static", StaticFiles(directory=str(STATIC)), name="static"),
    ]
    handlers = {HTTPException: http_error, Exception: internal_error}
    app = Starlette(routes=routes, exception_handlers=handlers, lifespan=lifespan)
    app.state.worker = worker
    return Guard(app, config)


async def _watch(request: Request, job: Job) -> None:
    """Cancel ``job`` when the client of ``request`` disconnects."""
    while not await request.is_disconnected():
        await asyncio.sleep(0.1)
    job.cancel.set()


async def _prepend(first: Any, rest: AsyncIterator) -> AsyncIterator:
    yield first
    async for item in rest:
        yield item
