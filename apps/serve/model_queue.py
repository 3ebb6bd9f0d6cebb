"""One model, many clients: a bounded queue of jobs and the one worker thread that owns the pipeline.

Jobs run one at a time in arrival order, so the KV-cache prefix and the image-embedding cache
of the pipeline carry over from one request to the next (a stateless multi-turn chat only
evaluates its new turn). Each job is a generator run on the worker thread; what it yields is
handed to the event loop of the request that submitted it. Between two items the worker checks
the job's cancel flag (the client went away, shutdown) and its deadline, and closes the
generator, which stops generation within a token and keeps the valid KV prefix.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable, Iterator, Optional

from edge.apps.serve.openai_schema import ApiError, Turn
from edge.errors import EdgeError

_END = object()


@dataclass(eq=False)
class Job:
    """A unit of work: ``work(pipeline)`` returns an iterator run on the worker thread."""

    work: Callable[[Any], Iterator[Any]]
    deadline: float
    loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.get_running_loop)
    out: asyncio.Queue = field(default_factory=asyncio.Queue)
    cancel: threading.Event = field(default_factory=threading.Event)

    def put(self, item: Any) -> None:
        """Hand ``item`` to the submitting request's event loop (from the worker thread)."""
        try:
            self.loop.call_soon_threadsafe(self.out.put_nowait, item)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            pass

    async def items(self) -> AsyncIterator[Any]:
        """What the job yields, in order; an error it raised is raised here."""
        while True:
            item = await self.out.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item


class Worker:
    """The thread that owns the pipeline. ``queue_size`` jobs may wait while one runs."""

    def __init__(self, pipeline: Any, queue_size: int = 8, no_cache: bool = False) -> None:
        self.pipeline = pipeline
        self.no_cache = no_cache
        self._queue: queue.Queue = queue.Queue(maxsize=max(queue_size, 1) if queue_size else 1)
        self._accept_waiting = queue_size > 0
        self._stopping = threading.Event()
        self.running: Optional[Job] = None
        self._thread = threading.Thread(target=self._loop, name="edge-serve-worker", daemon=True)
        self._thread.start()

    @property
    def queued(self) -> int:
        """Jobs waiting for the worker."""
        return self._queue.qsize()

    def submit(self, job: Job) -> Job:
        """Queue ``job``, or raise a 429 when the queue is full (or a 503 while shutting down)."""
        if self._stopping.is_set():
            raise ApiError("the server is shutting down", 503, type="server_error", code="shutting_down")
        if not self._accept_waiting and self.running is not None:
            raise ApiError("the server is busy; retry later", 429, type="rate_limit_error", code="queue_full")
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            raise ApiError(
                f"the queue is full ({self._queue.maxsize} requests waiting); retry later",
                429,
                type="rate_limit_error",
                code="queue_full",
            ) from None
        return job

    def stop(self, timeout: float = 10.0) -> None:
        """Cancel what runs and what waits, stop the thread and close the pipeline."""
        self._stopping.set()
        if self.running is not None:
            self.running.cancel.set()
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            job.put(ApiError("the server is shutting down", 503, type="server_error", code="shutting_down"))
            job.put(_END)
        self._thread.join(timeout)
        if not self._thread.is_alive():
            self.pipeline.close()

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                job = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            self.running = job
            try:
                self._run(job)
            finally:
                self.running = None
                job.put(_END)

    def _run(self, job: Job) -> None:
        if job.cancel.is_set():
            return
        if time.monotonic() > job.deadline:
            job.put(ApiError("the request timed out waiting in the queue", 503, type="server_error", code="timeout"))
            return
        if self.no_cache:
            self.pipeline.reset()
        items = None
        try:
            items = job.work(self.pipeline)
            for item in items:
                job.put(item)
                if job.cancel.is_set():
                    break
                if time.monotonic() > job.deadline:
                    job.put(ApiError("the request timed out", 503, type="server_error", code="timeout"))
                    break
        except EdgeError as exc:
            job.put(exc)
        except Exception as exc:  # a bug: the request fails, the server goes on
            job.put(ApiError(f"internal error ({type(exc).__name__}: {exc})", 500, type="server_error"))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()


def messages(pipeline: Any, turns: list[Turn]) -> list:
    """The runtime's messages for the checked turns (on the worker: audio is transcribed here).

    Images that come before all of a message's text go first, as ``edge run`` sends them; an
    image after some text is placed by the bundle's image marker, so the order is kept.
    """
    from edge.runtime.text.prompt import Message

    out = []
    marker = pipeline.manifest.prompt.image_marker
    for turn in turns:
        pieces: list = []
        for part in turn.parts:
            if part.kind == "audio":
                pieces.append(("text", pipeline.hear("", [part.value])))
            else:
                pieces.append((part.kind, part.value))
        texts = [v for k, v in pieces if k == "text"]
        images = tuple(v for k, v in pieces if k == "image")
        for text in texts:
            if marker in text:
                raise ApiError(f"message text must not contain the image marker {marker!r}", param="messages")
        kinds = [k for k, _ in pieces]
        if images and "text" in kinds and kinds.index("text") < max(i for i, k in enumerate(kinds) if k == "image"):
            text = "\n".join(marker if k == "image" else v for k, v in pieces)
        else:
            text = "\n".join(texts)
        out.append(Message(turn.role, text, images))
    return out
