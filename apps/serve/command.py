"""``edge serve``: load one bundle and serve it over the OpenAI API and a chat page."""

from __future__ import annotations

import signal
import socket
import sys
from pathlib import Path
from typing import List, Optional

import typer

from edge.apps.cli_options import BUNDLE, DEVICE, FALLBACK, GPU_LAYERS, PROVIDER, THREADS, VERBOSE, resolve_bundle
from edge.errors import InputError


def serve(
    bundle: Optional[Path] = BUNDLE,
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (not loopback: needs --api-key)."),
    port: int = typer.Option(8080, "--port", help="TCP port."),
    api_key: Optional[str] = typer.Option(
        None, "--api-key", envvar="EDGE_API_KEY", help="Require Authorization: Bearer KEY on /v1 (or EDGE_API_KEY)."
    ),
    audio_bundle: Optional[Path] = typer.Option(
        None, "--audio-bundle", help="A Whisper bundle: input_audio parts and /v1/audio/transcriptions."
    ),
    ctx: int = typer.Option(0, "--ctx", help="Context size in tokens (0 = the model's, at most 4096)."),
    threads: int = THREADS,
    provider: List[str] = PROVIDER,
    device: List[str] = DEVICE,
    fallback: str = FALLBACK,
    gpu_layers: Optional[str] = GPU_LAYERS,
    allow_path: List[Path] = typer.Option(
        [], "--allow-path", help="A directory whose files requests may name as images (repeatable; none by default)."
    ),
    queue_size: int = typer.Option(8, "--queue-size", help="Requests that may wait while one runs (beyond: 429)."),
    timeout: float = typer.Option(600.0, "--timeout", help="Seconds a request may take, queue wait included."),
    max_tokens: int = typer.Option(4096, "--max-tokens", help="The largest max_tokens a request may ask for."),
    max_body_mb: float = typer.Option(32.0, "--max-body-mb", help="Largest request body, in MiB."),
    max_images: int = typer.Option(8, "--max-images", help="Most images per request (the history included)."),
    max_image_pixels: int = typer.Option(25_000_000, "--max-image-pixels", help="Most pixels of one decoded image."),
    max_audio_seconds: float = typer.Option(120.0, "--max-audio-seconds", help="Longest audio input, in seconds."),
    body_timeout: float = typer.Option(30.0, "--body-timeout", help="Seconds a client has to send its request body."),
    no_cache: bool = typer.Option(
        False, "--no-cache", help="Forget the KV and image caches before every request (to measure what they save)."
    ),
    verbose: bool = VERBOSE,
) -> None:
    """Serve a bundle over an OpenAI-compatible API with a chat page at http://HOST:PORT/.

    Example: edge serve llava.bundle --audio-bundle whisper.bundle
    """
    import edge
    from edge.apps.backends import command_options
    from edge.apps.serve.config import Limits, ServeConfig

    try:
        import uvicorn

        from edge.apps.serve.app import build_app
    except ImportError as exc:
        raise InputError(f"edge serve needs the serve extras ({exc.name} is missing): pip install 'edge-mllm[serve]'")
    limits = Limits(
        max_body_bytes=int(max_body_mb * (1 << 20)),
        max_image_pixels=max_image_pixels,
        max_images=max_images,
        max_audio_seconds=max_audio_seconds,
        max_tokens=max_tokens,
        body_timeout_s=body_timeout,
        request_timeout_s=timeout,
    )
    config = ServeConfig(host, port, api_key, tuple(allow_path), queue_size, limits, no_cache)
    _check_port(host, port)
    runtime = command_options(threads, ctx, provider, verbose, device, fallback, gpu_layers)
    pipe = edge.load(resolve_bundle(bundle, threads, False), runtime, speech=audio_bundle)
    audio_id = None
    if pipe.speech is not None:
        audio_id = Path(audio_bundle).name if audio_bundle else f"{pipe.manifest.name}-audio"
    app = build_app(pipe, config, pipe.manifest.name, audio_id)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level="info" if verbose else "warning",
            access_log=verbose,
            timeout_graceful_shutdown=5,
            lifespan="on",
        )
    )
    url = f"http://{'[' + host + ']' if ':' in host else host}:{port}"
    print(f"edge: serving {pipe.manifest.name} at {url}/ (OpenAI API at {url}/v1); Ctrl-C stops", file=sys.stderr)
    # uvicorn catches SIGINT/SIGTERM, shuts down (open requests get 5 s, then are cancelled), then
    # raises the signal again under the handlers it found: these, so the command ends with status 0
    previous = {s: signal.signal(s, lambda *_: None) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print("edge: server stopped", file=sys.stderr)


def _check_port(host: str, port: int) -> None:
    """Fail with one line, before the model loads, when the address cannot be bound."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            raise InputError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
