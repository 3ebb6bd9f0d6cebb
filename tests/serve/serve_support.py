"""A real `edge serve` subprocess on a free loopback port, and small request helpers."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Optional

from conftest import THREADS


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``edge serve ARGS`` in its own process (cwd ``workdir``); stderr goes to ``workdir/serve.log``."""

    def __init__(self, args: list[str], workdir: Path, api_key: Optional[str] = None, timeout: float = 300) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.api_key = api_key
        self.workdir = workdir
        self.log = workdir / "serve.log"
        cmd = [sys.executable, "-m", "edge.apps.cli", "serve", *args, "--port", str(self.port), "--threads", THREADS]
        env = dict(os.environ, EDGE_DEBUG="")
        self.proc = subprocess.Popen(cmd, cwd=workdir, stdout=subprocess.DEVNULL, stderr=self.log.open("w"), env=env)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"edge serve exited with {self.proc.returncode}: {self.log.read_text()}")
            try:
                if self.get("/health")[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.proc.kill()
                raise RuntimeError(f"edge serve did not start: {self.log.read_text()}")
            time.sleep(0.2)

    def client(self, **kw):
        from openai import OpenAI

        return OpenAI(base_url=self.url + "/v1", api_key=self.api_key or "unused", max_retries=0, timeout=300, **kw)

    @property
    def model(self) -> str:
        return json.loads(self.get("/v1/models")[1])["data"][0]["id"]

    def request(self, method: str, path: str, body: Optional[bytes] = None, headers: Optional[dict] = None):
        """``(status, body bytes, response headers)`` of one plain HTTP request."""
        h = {"Content-Type": "application/json"}
        if self.api_key:
            h["Authorization"] = f"Bearer {self.api_key}"
        h.update(headers or {})
        req = urllib.request.Request(self.url + path, data=body, method=method, headers=h)
        try:
            with urllib.request.urlopen(req, timeout=300) as r:
                return r.status, r.read(), dict(r.headers)
        except urllib.error.HTTPError as e:
            return e.code, e.read(), dict(e.headers)

    def get(self, path: str):
        return self.request("GET", path)[:2]

    def post(self, path: str, payload, headers: Optional[dict] = None):
        """``(status, parsed JSON)``; ``payload`` may be bytes (sent as is)."""
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        status, body, _ = self.request("POST", path, data, headers)
        return status, json.loads(body)

    def health(self) -> dict:
        return json.loads(self.get("/health")[1])

    def wait_idle(self, timeout: float = 30) -> float:
        """Seconds until nothing runs or waits."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            h = self.health()
            if not h["running"] and not h["queued"]:
                return time.monotonic() - t0
            time.sleep(0.05)
        raise AssertionError(f"the server stayed busy: {self.health()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"edge serve ignored signal {sig}: {self.log.read_text()}")
        return self.proc.returncode


def data_url(path: Path) -> str:
    mime = "image/png" if path.suffix == ".png" else "image/jpeg"
    return f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode()


def image_message(path: Path, text: str) -> list[dict]:
    return [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": data_url(path)}},
                                         {"type": "text", "text": text}]}]  # fmt: skip


def snapshot(*dirs: Path) -> dict:
    """Every file under ``dirs`` with its size and mtime (to show nothing on disk changed)."""
    out = {}
    for d in dirs:
        for p in sorted(Path(d).rglob("*")):
            if p.is_file() and p.name != "serve.log":
                st = p.stat()
                out[str(p)] = (st.st_size, st.st_mtime_ns)
    return out


CHROMIUM = ("chromium", "chromium-browser", "google-chrome")
DRIVER = ("chromedriver", "chromium-driver")


def chromium(*args: str, window: str = "1000,720"):
    """A headless Chromium driven by Selenium, with extra command-line ``args``; the caller quits it.

    Without selenium or a browser the test is skipped, except in CI (``CI=true``), where `.ci/run`
    installs both, so a missing one fails."""
    import shutil

    import pytest

    in_ci = os.environ.get("CI", "").lower() == "true"
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        (pytest.fail if in_ci else pytest.skip)("selenium is not installed (pip install -e '.[test]')")
    binary = next((p for p in map(shutil.which, CHROMIUM) if p), None)
    driver = next((p for p in map(shutil.which, DRIVER) if p), None)
    if not (binary and driver):
        message = "no chromium/chromedriver on PATH (apt-get install chromium chromium-driver)"
        (pytest.fail if in_ci else pytest.skip)(message)
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    base = ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", f"--window-size={window}",
            "--disable-gpu", "--no-first-run", "--disable-background-networking")  # fmt: skip
    for arg in (*base, *args):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(executable_path=driver), options=options)
