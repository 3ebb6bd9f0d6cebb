"""What `edge serve` costs and what its caches save (a benchmark, not a test).

``python -m edge.benchmarks.serve_overhead [BUNDLE] [--runs N] [--tokens N] [--threads N]``

1. **Overhead**: the same chat request, streamed through the server (the official wire format
   read by a plain HTTP client, server-sent events parsed as they come) and run in process on
   the same bundle. Both sides start from empty caches each time (the server with ``--no-cache``,
   the pipeline with ``reset()``), so TTFT includes the whole prompt. Figures are medians.
2. **Multi-turn**: one stateless chat of several turns sent to a server with the caches and to
   one with ``--no-cache``; per turn the prompt tokens, the tokens the KV cache held and the
   prefill time (the server's ``timings``).

Without BUNDLE the offline default model (SmolLM2-135M-Instruct) is used.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

QUESTION = "Write a short story about a lighthouse keeper."
TURNS = ["What is the capital of France?", "And of Italy?", "And of Spain?", "Which of them is the largest?",
         "Thank you. Summarise our chat in one line."]  # fmt: skip


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(bundle: Path, threads: int, *extra: str) -> tuple[subprocess.Popen, str]:
    """``edge serve BUNDLE`` on a free loopback port, once ``/health`` answers."""
    port = _port()
    cmd = [sys.executable, "-m", "edge.apps.cli", "serve", str(bundle), "--port", str(port), "--threads",
           str(threads), *extra]  # fmt: skip
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        if proc.poll() is not None:
            log.seek(0)
            raise RuntimeError(f"edge serve exited with {proc.returncode}: {log.read().decode()[-2000:]}")
        try:
            urllib.request.urlopen(url + "/health", timeout=2).read()
            return proc, url
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("edge serve did not start")


def stream_chat(url: str, messages: list, tokens: int) -> dict:
    """One streamed chat request: client-side TTFT and decode rate, and the server's usage/timings."""
    body = {"messages": messages, "max_tokens": tokens, "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True}}  # fmt: skip
    req = urllib.request.Request(url + "/v1/chat/completions", json.dumps(body).encode(),
                                 {"Content-Type": "application/json"})  # fmt: skip
    t0 = time.perf_counter()
    first = last = None
    out: dict = {"text": ""}
    with urllib.request.urlopen(req, timeout=600) as r:
        for line in r:
            if not line.startswith(b"data: ") or line.strip() == b"data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                out.update(usage=chunk["usage"], timings=chunk["timings"])
            elif chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
                last = time.perf_counter()
                first = first or last
                out["text"] += chunk["choices"][0]["delta"]["content"]
    n = out["usage"]["completion_tokens"]
    out["ttft_ms"] = (first - t0) * 1000
    out["decode_tok_s"] = (n - 1) / (last - first) if n > 1 and last > first else 0.0
    return out


def in_process(pipe, messages: list, tokens: int) -> dict:
    """The same request through the pipeline in this process, timed the same way."""
    from edge.events import FinishEvent
    from edge.options import GenerateOptions, SamplingOptions
    from edge.runtime.text.prompt import Message

    pipe.reset()
    msgs = [Message(m["role"], m["content"]) for m in messages]
    options = GenerateOptions(max_tokens=tokens, sampling=SamplingOptions(temperature=0.0))
    t0 = time.perf_counter()
    first = last = None
    for ev in pipe.stream_messages(msgs, options):
        if isinstance(ev, FinishEvent):
            n = len(ev.tokens)
            break
        if ev.text:
            last = time.perf_counter()
            first = first or last
    return {"ttft_ms": (first - t0) * 1000, "decode_tok_s": (n - 1) / (last - first) if n > 1 else 0.0}


def multi_turn(url: str, tokens: int, runs: int) -> list[dict]:
    """A stateless chat (every request carries the whole history), ``runs`` times: per-turn medians.

    Each run's system prompt begins differently, so no run reuses another's conversation."""
    stream_chat(url, [{"role": "user", "content": "Hello"}], 4)  # warm-up, shares no prefix with the chats
    per_run = [_chat(url, tokens, i) for i in range(runs)]
    return [{k: statistics.median(run[t][k] for run in per_run) for k in per_run[0][t]} for t in range(len(TURNS))]


def _chat(url: str, tokens: int, i: int) -> list[dict]:
    history, rows = [{"role": "system", "content": f"Chat {i}. You are a helpful assistant."}], []
    for turn in TURNS:
        history.append({"role": "user", "content": turn})
        out = stream_chat(url, history, tokens)
        history.append({"role": "assistant", "content": out["text"]})
        rows.append({"prompt": out["usage"]["prompt_tokens"], "cached": out["usage"]["prompt_tokens_details"]
                     ["cached_tokens"], "prefill_ms": out["timings"]["prefill_ms"]})  # fmt: skip
    return rows


def _stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    proc.wait(60)


def main(argv: list[str] | None = None) -> int:
    """Run both measurements and print them as Markdown tables (and JSON with --json)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("bundle", nargs="?", type=Path)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args(argv)
    bundle = args.bundle
    if bundle is None:  # the CLI's own first-run flow (imported here: benchmarks sit below apps)
        from edge.apps.defaults import default_bundle
        from edge.apps.terminal_progress import TerminalProgress

        bundle = default_bundle(TerminalProgress(), args.threads)
    import edge

    messages = [{"role": "user", "content": QUESTION}]
    pipe = edge.load(bundle, threads=args.threads)
    local = [in_process(pipe, messages, args.tokens) for _ in range(args.runs + 1)][1:]
    pipe.close()
    proc, url = start_server(bundle, args.threads, "--no-cache")
    try:
        served = [stream_chat(url, messages, args.tokens) for _ in range(args.runs + 1)][1:]
        uncached = multi_turn(url, 32, args.runs)
    finally:
        _stop(proc)
    proc, url = start_server(bundle, args.threads)
    try:
        cached = multi_turn(url, 32, args.runs)
    finally:
        _stop(proc)
    med = {side: {k: statistics.median(r[k] for r in rows) for k in ("ttft_ms", "decode_tok_s")}
           for side, rows in (("in_process", local), ("server", served))}  # fmt: skip
    print(f"bundle: {bundle}  ({args.runs} runs, {args.tokens} tokens, threads {args.threads or os.cpu_count()})\n")
    print("| side | TTFT ms | decode tok/s |\n|---|---:|---:|")
    for side, m in med.items():
        print(f"| {side} | {m['ttft_ms']:.1f} | {m['decode_tok_s']:.1f} |")
    print("\n| turn | prompt tokens | cached (cache) | prefill ms (cache) | prefill ms (--no-cache) |")
    print("|---:|---:|---:|---:|---:|")
    for i, (c, u) in enumerate(zip(cached, uncached), 1):
        print(f"| {i} | {c['prompt']:.0f} | {c['cached']:.0f} | {c['prefill_ms']:.1f} | {u['prefill_ms']:.1f} |")
    if args.json:
        args.json.write_text(json.dumps({"overhead": med, "multi_turn": {"cache": cached, "no_cache": uncached}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
