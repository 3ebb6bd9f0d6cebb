"""Hostile requests against `edge serve` (API key set, one allowed directory, small limits): each one
is a clean 4xx in OpenAI's error format, the server stays healthy, and nothing on disk changes."""

from __future__ import annotations

import base64
import http.client
import json
import socket
import struct
import time
import zlib

import pytest
from serve_support import Server, data_url, snapshot

pytest.importorskip("uvicorn")

KEY = "test-key-0123456789"


@pytest.fixture(scope="module")
def setup(tiny_llava_bundle, photo, tmp_path_factory):
    work = tmp_path_factory.mktemp("hostile")
    allowed = work / "allowed"
    allowed.mkdir()
    (allowed / "ok.png").write_bytes(photo.read_bytes())
    (work / "secret.png").write_bytes(photo.read_bytes())  # next to the allowed directory, not in it
    before = snapshot(tiny_llava_bundle, work)
    args = [str(tiny_llava_bundle), "--api-key", KEY, "--allow-path", str(allowed), "--ctx", "512",
            "--max-body-mb", "1", "--body-timeout", "1", "--max-tokens", "256"]  # fmt: skip
    srv = Server(args, work, api_key=KEY)
    yield srv, allowed
    assert srv.stop() == 0
    assert snapshot(tiny_llava_bundle, work) == before
    assert sorted(p.name for p in work.iterdir()) == ["allowed", "secret.png", "serve.log"]


def chat(content, **extra) -> dict:
    return {"model": "tiny", "messages": [{"role": "user", "content": content}], "max_tokens": 2, **extra}


def image(url: str, text: str = "What?") -> list:
    return [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": text}]


def bomb_png(side: int = 40_000) -> bytes:
    """A tiny PNG whose header claims side x side pixels (a decompression bomb's shape)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = zlib.compress(b"\x00" * 64)
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


def b64url(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode()


def assert_refused(srv: Server, status: int, payload, expect: int, param_or_code: str | None = None):
    assert status == expect, payload
    err = payload["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"] and "\n" not in err["message"]
    if param_or_code:
        assert any(param_or_code in (s or "") for s in (err["param"], err["code"])), err
    assert srv.health()["status"] == "ok"


CASES = {
    "wrong type of messages": ({"messages": "hello"}, 400, "messages"),
    "missing messages": ({"max_tokens": 2}, 400, "messages"),
    "empty messages": ({"messages": []}, 400, "messages"),
    "message not an object": ({"messages": [3]}, 400, "messages[0]"),
    "unknown role": ({"messages": [{"role": "wizard", "content": "hi"}]}, 400, "messages[0].role"),
    "content of a wrong type": (chat(12), 400, "messages[0].content"),
    "unknown part": (chat([{"type": "video", "video": "x"}]), 400, "messages[0].content[0]"),
    "max_tokens a string": (chat("hi", max_tokens="10"), 400, "max_tokens"),
    "negative max_tokens": (chat("hi", max_tokens=-1), 400, "max_tokens"),
    "zero max_tokens": (chat("hi", max_tokens=0), 400, "max_tokens"),
    "enormous max_tokens": (chat("hi", max_tokens=10**12), 400, "max_tokens"),
    "enormous max_completion_tokens": (chat("hi", max_completion_tokens=10**6), 400, "max_completion_tokens"),
    "temperature a string": (chat("hi", temperature="hot"), 400, "temperature"),
    "temperature out of range": (chat("hi", temperature=7), 400, "temperature"),
    "stream not a boolean": (chat("hi", stream="yes"), 400, "stream"),
    "n of 2": (chat("hi", n=2), 400, "n"),
    "five stop sequences": (chat("hi", stop=["a", "b", "c", "d", "e"]), 400, "stop"),
    "empty stop sequence": (chat("hi", stop=[""]), 400, "stop"),
    "tools": (chat("hi", tools=[{"type": "function"}]), 400, "tools"),
    "unknown model": (chat("hi", model="gpt-4o"), 404, "model_not_found"),
    "base64 that is not an image": (chat(image(b64url(b"definitely not an image" * 10))), 400, "invalid_image"),
    "invalid base64": (chat(image("data:image/png;base64,@@@@")), 400, "image_url"),
    "decompression bomb": (chat(image(b64url(bomb_png()))), 400, "invalid_image"),
    "http image_url": (chat(image("http://example.com/cat.png")), 400, "remote_url_not_allowed"),
    "https image_url": (chat(image("https://example.com/cat.png")), 400, "remote_url_not_allowed"),
    "file:///etc/passwd": (chat(image("file:///etc/passwd")), 400, "path_not_allowed"),
    "absolute path": (chat(image("/etc/passwd")), 400, "path_not_allowed"),
    "../ out of the allowed directory": (chat(image("../secret.png")), 400, "path_not_allowed"),
    "../../../etc/passwd": (chat(image("../../../../../../etc/passwd")), 400, "path_not_allowed"),
    "image in a system message": ({"messages": [{"role": "system", "content": image("x")}]}, 400, "messages[0]"),
    "audio without a speech model": (
        chat([{"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}}]),
        400,
        "input_audio",
    ),
    "prompt longer than the context": (chat("word " * 3000), 400, "context_length_exceeded"),
    "completion without a prompt": ({"max_tokens": 2}, 400, "prompt"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_hostile_json_requests_are_refused(setup, name):
    srv, _ = setup
    payload, expect, where = CASES[name]
    payload = dict(payload)
    if payload.get("model") == "tiny":
        payload["model"] = srv.model
    path = "/v1/completions" if name.startswith("completion") else "/v1/chat/completions"
    assert_refused(srv, *srv.post(path, payload), expect, where)


def test_a_file_inside_the_allowed_directory_is_read(setup):
    srv, allowed = setup
    status, body = srv.post("/v1/chat/completions", chat(image("ok.png"), model=srv.model))
    assert status == 200 and body["choices"][0]["message"]["content"] is not None
    status, body = srv.post("/v1/chat/completions", chat(image((allowed / "ok.png").as_uri()), model=srv.model))
    assert status == 200


@pytest.mark.parametrize("body", [b"{not json", b"", b"[1, 2", b"\xff\xfe", b"[" * 100_000 + b"]" * 100_000])
def test_malformed_json_is_a_400(setup, body):
    srv, _ = setup
    assert_refused(srv, *srv.post("/v1/chat/completions", body), 400)


def test_a_huge_body_is_a_413(setup):
    srv, _ = setup
    payload = json.dumps(chat(image(b64url(b"\x00" * (2 << 20))), model=srv.model)).encode()
    # announced by Content-Length: refused before the body is read (the client sends only the
    # headers and reads the answer, so the early reply cannot race its still-sending socket)
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
    try:
        conn.putrequest("POST", "/v1/chat/completions", skip_host=True)
        for name, value in (("Host", "127.0.0.1"), ("Authorization", f"Bearer {KEY}"),
                            ("Content-Type", "application/json"), ("Content-Length", str(len(payload)))):  # fmt: skip
            conn.putheader(name, value)
        conn.endheaders()
        response = conn.getresponse()
        assert_refused(srv, response.status, json.loads(response.read()), 413, "body_too_large")
    finally:
        conn.close()
    # a body that lies about its length (chunked, no Content-Length) is cut off as well
    with socket.create_connection(("127.0.0.1", srv.port)) as s:
        s.sendall(f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {KEY}\r\n"
                  "Transfer-Encoding: chunked\r\n\r\n".encode())  # fmt: skip
        block = b"x" * 65536
        try:
            for _ in range(40):
                s.sendall(b"%x\r\n%s\r\n" % (len(block), block))
        except OSError:
            pass
        assert b" 413 " in s.recv(65536).split(b"\r\n")[0]
    assert srv.health()["status"] == "ok"


@pytest.mark.parametrize("auth", [None, "Bearer wrong-key-0000", "Basic abc", f"Bearer {KEY}x"])
def test_a_missing_or_wrong_api_key_is_a_401(setup, auth):
    srv, _ = setup
    headers = {"Authorization": auth} if auth else {}
    srv_key, srv.api_key = srv.api_key, None
    try:
        status, body, hdrs = srv.request("GET", "/v1/models", headers=headers)
    finally:
        srv.api_key = srv_key
    assert_refused(srv, status, json.loads(body), 401, "invalid_api_key")
    assert hdrs.get("www-authenticate") == "Bearer"


@pytest.mark.parametrize("headers", [{"Origin": "http://evil.example"}, {"Host": "evil.example:80"}])
def test_other_origins_and_hosts_are_refused(setup, headers):
    srv, _ = setup
    status, body, _ = srv.request("POST", "/v1/chat/completions", json.dumps(chat("hi")).encode(), headers)
    assert_refused(srv, status, json.loads(body), 403)
    status, body, hdrs = srv.request("OPTIONS", "/v1/chat/completions", headers={"Origin": "http://evil.example"})
    assert status == 403 and not any(k.lower().startswith("access-control") for k in hdrs)


def test_a_slow_client_gets_a_408_and_the_server_goes_on(setup):
    srv, _ = setup
    t0 = time.monotonic()
    with socket.create_connection(("127.0.0.1", srv.port), timeout=30) as s:
        s.sendall(f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {KEY}\r\n"
                  "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"messa".encode())  # fmt: skip
        reply = s.recv(65536)
    assert b" 408 " in reply.split(b"\r\n")[0] and time.monotonic() - t0 < 20
    assert srv.health()["status"] == "ok"
    status, body = srv.post("/v1/chat/completions", chat("hi", model=srv.model))
    assert status == 200


def test_unknown_routes_and_methods_are_json_errors(setup):
    srv, _ = setup
    for method, path, expect in [("GET", "/v1/nothing", 404), ("GET", "/v1/chat/completions", 405)]:
        status, body, _ = srv.request(method, path)
        assert_refused(srv, status, json.loads(body), expect)


def test_the_page_is_served_offline_with_a_strict_policy(setup):
    srv, _ = setup
    status, body, headers = srv.request("GET", "/")
    assert status == 200 and b"/static/app.js" in body
    assert "default-src 'self'" in headers["content-security-policy"]
    for name in ("app.js", "style.css"):
        status, text, _ = srv.request("GET", f"/static/{name}")
        assert status == 200 and b"http://" not in text and b"https://" not in text
    assert b"https://" not in body and b"http://" not in body
    assert srv.request("GET", "/static/../config.py")[0] == 404
    _ = data_url  # the helpers module is shared with the other server tests
