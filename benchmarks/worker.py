"""One side of the benchmark in its own process, driven over JSON lines.

``python -c "from <pkg>.worker import main; main()" CONFIG_JSON`` loads one side
(``edge``, ``transformers``, ``llama.cpp``, ``faster-whisper``), answers
``{"ok": true, "load_ms": ..., "info": {...}}``, then serves one request per stdin
line (``{"op": "ttft", "args": {...}}``) with one reply line each:
``{"ok": true, "result": {...}, "peak_rss": bytes}`` or ``{"ok": false, "error": ...,
"not_available": bool}``. ``{"op": "quit"}`` ends it.

A process per side keeps the sides apart (threads, allocators, imports: the edge side
never imports torch) and gives each a clean peak-RSS figure. The protocol uses a
private copy of stdout; file descriptor 1 is pointed at stderr so that whatever the
libraries print cannot corrupt it.
"""

from __future__ import annotations

import json
import os
import sys
import time

from .common import NotAvailable, peak_rss_bytes


def make_side(cfg: dict):
    """Build (load) the side ``cfg["side"]`` names."""
    side, threads = cfg["side"], int(cfg["threads"])
    if side == "edge":
        from .ours import Ours

        return Ours(
            cfg["bundle"],
            threads,
            cfg.get("n_ctx", 4096),
            cfg.get("devices"),
            cfg.get("fallback", "cpu"),
            cfg.get("overrides"),
        )
    if side == "edge-speech":
        from .ours import OursSpeech

        return OursSpeech(cfg["bundle"], threads)
    if side == "transformers":
        from .peers import TransformersPeer

        return TransformersPeer(cfg["source"], threads)
    if side == "llama.cpp":
        from .peer_llamacpp import LlamaCppPeer

        return LlamaCppPeer(threads, cfg.get("n_ctx", 4096), cfg.get("text"), cfg.get("mmproj"), cfg.get("same_gguf"))
    if side == "faster-whisper":
        from .peers import FasterWhisperPeer

        return FasterWhisperPeer(cfg["model_dir"], threads)
    raise ValueError(f"unknown side {side!r}")


def main() -> None:
    """Serve requests for one side until ``quit`` or end of input."""
    cfg = json.loads(sys.argv[1])
    proto = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    def send(obj: dict) -> None:
        proto.write(json.dumps(obj) + "\n")
        proto.flush()

    t0 = time.perf_counter()
    try:
        side = make_side(cfg)
    except NotAvailable as exc:
        send({"ok": False, "error": str(exc), "not_available": True})
        return
    except Exception as exc:  # reported to the runner, which reports it in one line
        send({"ok": False, "error": f"{type(exc).__name__}: {exc}".splitlines()[0], "not_available": False})
        return
    send({"ok": True, "load_ms": (time.perf_counter() - t0) * 1e3, "info": side.info(), "peak_rss": peak_rss_bytes()})
    for line in sys.stdin:
        if not line.strip():
            continue
        req = json.loads(line)
        if req.get("op") == "quit":
            break
        try:
            result = getattr(side, req["op"])(**req.get("args", {}))
            send({"ok": True, "result": result, "peak_rss": peak_rss_bytes()})
        except NotAvailable as exc:
            send({"ok": False, "error": str(exc), "not_available": True})
        except Exception as exc:
            send({"ok": False, "error": f"{type(exc).__name__}: {exc}".splitlines()[0], "not_available": False})
    try:
        side.close()
    except Exception:
        pass


if __name__ == "__main__":
    main()
