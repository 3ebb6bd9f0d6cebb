"""A new user's first minutes, on real `edge` processes: Ctrl-C stops an answer (not the chat),
commands without BUNDLE find the default model, `edge doctor` is quick and says where bundles
live, and errors come in the order a user needs them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import run_cli

from edge.apps.defaults import default_bundle_path

TIMEOUT = 120


class _Edge:
    """A running `edge` process whose stdout and stderr are collected by two threads."""

    def __init__(self, *args: str, env: dict | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "edge.apps.cli", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=dict(os.environ, EDGE_DEBUG="", **(env or {})),
        )
        self.out, self.err = bytearray(), bytearray()
        for pipe, buf in ((self.proc.stdout, self.out), (self.proc.stderr, self.err)):
            threading.Thread(target=self._drain, args=(pipe, buf), daemon=True).start()

    @staticmethod
    def _drain(pipe, buf: bytearray) -> None:
        while chunk := pipe.read1(4096):
            buf.extend(chunk)

    def wait_for(self, what, timeout: float = TIMEOUT) -> None:
        """Wait until ``what()`` is true (the process must still run, or have said it)."""
        end = time.monotonic() + timeout
        while not what():
            assert time.monotonic() < end, f"timed out; stdout {bytes(self.out)[-300:]!r} stderr {self.stderr[-600:]}"
            time.sleep(0.02)

    @property
    def stderr(self) -> str:
        return self.err.decode("utf-8", errors="replace")

    def send(self, line: str) -> None:
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def finish(self) -> int:
        return self.proc.wait(timeout=TIMEOUT)


def test_ctrl_c_stops_the_answer_and_the_chat_goes_on(tiny_llama_bundle):
    # a random model that never says its stop token: without Ctrl-C the first answer runs 16k tokens
    chat = _Edge("chat", str(tiny_llama_bundle), "-n", "3000", "--ctx", "16384", "--threads", "1")
    chat.wait_for(lambda: "edge chat with" in chat.stderr)
    chat.send("Tell me a very long story.")
    chat.wait_for(lambda: len(chat.out) > 40)
    chat.proc.send_signal(signal.SIGINT)
    chat.wait_for(lambda: "[stopped]" in chat.stderr)
    assert chat.proc.poll() is None, "Ctrl-C during an answer must not end the chat"
    chat.send("And then?")
    chat.wait_for(lambda: "tokens, prefill" in chat.stderr)  # the second answer ran to its end
    line = next(x for x in chat.stderr.splitlines() if "tokens, prefill" in x)
    new, total = (int(x) for x in line.split("(")[1].split(")")[0].split(" new of "))
    assert 0 < new < total, f"the next turn reuses the cached conversation: {line}"
    time.sleep(0.5)  # back at the prompt, reading the next line
    chat.proc.send_signal(signal.SIGINT)  # Ctrl-C at the prompt quits, as Ctrl-D does
    assert chat.finish() == 0
    assert "Traceback" not in chat.stderr and "interrupted" not in chat.stderr


def test_ctrl_c_stops_edge_run(tiny_llama_bundle):
    run = _Edge("run", str(tiny_llama_bundle), "-p", "Hello", "-n", "100000", "--ctx", "16384", "--threads", "1")
    run.wait_for(lambda: len(run.out) > 40)
    run.proc.send_signal(signal.SIGINT)
    assert run.finish() == 130
    assert "[stopped]" in run.stderr and "Traceback" not in run.stderr
    assert bytes(run.out).endswith(b"\n")


@pytest.fixture()
def default_cache(tiny_llama_bundle, tmp_path, monkeypatch) -> dict:
    """An edge cache whose default bundle is (a link to) the tiny Llama bundle."""
    env = {"EDGE_CACHE": str(tmp_path / "cache")}
    monkeypatch.setenv("EDGE_CACHE", env["EDGE_CACHE"])
    link = default_bundle_path()
    link.parent.mkdir(parents=True)
    link.symlink_to(Path(tiny_llama_bundle).resolve(), target_is_directory=True)
    return env


def test_inspect_and_bench_without_bundle_use_the_default_model(default_cache, tmp_path):
    proc = run_cli("inspect", "--json", env=default_cache)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["family"] == "llama"
    proc = run_cli("inspect", env=default_cache)
    assert proc.returncode == 0 and "path=" in proc.stdout and "smollm2-135m-instruct-f16" in proc.stdout
    assert run_cli("inspect", "--schema", env=default_cache).stdout.startswith("{")
    proc = run_cli(
        "bench", "--quick", "--json", "--peers", "none", "--repeats", "1", "--threads", "1",
        "--work", str(tmp_path / "work"), env=default_cache, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "edge" in json.loads(proc.stdout)["sides"]


def test_doctor_is_quick_and_says_where_bundles_live(default_cache, tmp_path):
    code = (
        "import sys; from edge.apps.cli import main; rc = main(['doctor', '--json']); "
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules), file=sys.stderr); sys.exit(rc)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=dict(os.environ, **default_cache)
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == "[]", "doctor must not import torch or transformers"
    info = json.loads(proc.stdout)
    assert info["cache_dir"] == default_cache["EDGE_CACHE"]
    assert info["default_bundle"].endswith("smollm2-135m-instruct-f16") and info["default_bundle_exists"] is True
    assert info["threads_auto"]["llm"] >= 1 and info["torch"]  # versions read from the installed metadata
    empty = run_cli("doctor", env={"EDGE_CACHE": str(tmp_path / "empty")})
    assert empty.returncode == 0 and "default_bundle_exists: False" in empty.stdout


def test_a_missing_image_is_reported_before_a_missing_vision_encoder(tiny_llama_bundle, tmp_path):
    proc = run_cli("run", str(tiny_llama_bundle), "-p", "hi", "--image", str(tmp_path / "missing.jpg"))
    assert proc.returncode == 2 and "missing.jpg' not found" in proc.stderr
    assert "vision encoder" not in proc.stderr


def test_negative_threads_are_refused_in_the_words_of_the_help(tiny_llama_bundle):
    help_text = " ".join(run_cli("run", "--help").stdout.split())
    assert "0 = auto" in help_text and "1 to 1024" in help_text
    for command in (["run", str(tiny_llama_bundle), "-p", "hi"], ["bench", str(tiny_llama_bundle)]):
        proc = run_cli(*command, "--threads", "-1")
        assert proc.returncode == 2, proc.stderr
        assert "threads must be 0 (" in proc.stderr and "or 1 to 1024, got -1" in proc.stderr


def test_an_unknown_fidelity_mode_fails_before_the_export(tiny_llama_dir, tmp_path):
    proc = run_cli("export", str(tiny_llama_dir), "-o", str(tmp_path / "q"), "--quant", "q4", "--fidelity", "some")
    assert proc.returncode == 2 and "fidelity must be quick or full" in proc.stderr
    assert not (tmp_path / "q").exists()
