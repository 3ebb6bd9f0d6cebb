"""The server's gate, as plain ASGI middleware: host and origin checks, API key, body size and time.

Every request passes here before a route sees it:

- ``Host`` must name this machine when the server is bound to loopback (a DNS-rebinding page
  cannot reach it under its own name), and a request that carries an ``Origin`` must come from
  the server's own page: CORS stays closed, preflights are refused.
- With an API key, every ``/v1`` request needs ``Authorization: Bearer KEY`` (compared in
  constant time with :func:`hmac.compare_digest`). The page and ``/health`` are public.
- The body is read here, whole, before the route runs: beyond ``max_body_bytes`` the answer is
  413 (at once when ``Content-Length`` says so), and a client that does not finish sending it
  within ``body_timeout_s`` gets 408. Routes then read the buffered body.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import time
from typing import Any, Awaitable, Callable

from edge.apps.serve.config import ServeConfig, is_loopback
from edge.apps.serve.openai_schema import ApiError

Scope = dict
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]


async def send_error(send: Send, err: ApiError, headers: tuple = ()) -> None:
    """Answer with OpenAI's error JSON."""
    body = json.dumps(err.body()).encode()
    await send(
        {
            "type": "http.response.start",
            "status": err.status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
                *headers,
            ],
        }  # fmt: skip
    )
    await send({"type": "http.response.body", "body": body})


class Guard:
    """Wraps the app; see the module docstring for what it refuses."""

    def __init__(self, app: Any, config: ServeConfig) -> None:
        self.app = app
        self.config = config
        self.loopback = is_loopback(config.host)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        try:
            self._check(scope, headers)
            body = await self._body(receive, headers)
        except ApiError as err:
            extra = ((b"www-authenticate", b"Bearer"),) if err.status == 401 else ()
            return await send_error(send, err, extra)
        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: only http.disconnect comes

        await self.app(scope, replay, send)

    def _check(self, scope: Scope, headers: dict) -> None:
        host = headers.get("host", "")
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        if self.loopback and not is_loopback(name):
            raise ApiError(f"unknown host {host!r}; this server answers to 127.0.0.1 and localhost", 403,
                           code="host_not_allowed")  # fmt: skip
        origin = headers.get("origin")
        if origin is not None and origin not in (f"http://{host}", f"https://{host}"):
            raise ApiError("cross-origin requests are not allowed", 403, code="origin_not_allowed")
        if scope["method"] == "OPTIONS":
            raise ApiError("cross-origin requests are not allowed", 403, code="origin_not_allowed")
        key = self.config.api_key
        if key and scope["path"].startswith("/v1"):
            auth = headers.get("authorization", "")
            given = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
            if not given:
                raise ApiError("missing API key: send Authorization: Bearer KEY", 401, code="invalid_api_key")
            if not hmac.compare_digest(given.encode(), key.encode()):
                raise ApiError("invalid API key", 401, code="invalid_api_key")

    async def _body(self, receive: Receive, headers: dict) -> bytes:
        limit = self.config.limits.max_body_bytes
        declared = headers.get("content-length")
        if declared is not None:
            if not declared.isdigit():
                raise ApiError("invalid Content-Length")
            if int(declared) > limit:
                raise ApiError(f"the request body is larger than the limit of {limit} bytes", 413,
                               code="body_too_large")  # fmt: skip
        deadline = time.monotonic() + self.config.limits.body_timeout_s
        chunks, size = [], 0
        while True:
            left = deadline - time.monotonic()
            try:
                message = await asyncio.wait_for(receive(), max(left, 0.001))
            except asyncio.TimeoutError:
                raise ApiError("the request body did not arrive in time", 408, code="timeout") from None
            if message["type"] == "http.disconnect":
                raise ApiError("the client went away", 400)
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise ApiError(f"the request body is larger than the limit of {limit} bytes", 413,
                               code="body_too_large")  # fmt: skip
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)
