"""The ``edge`` command line (typer). Content goes to stdout, diagnostics to stderr."""
from __future__ import annotations

import json
import os
import sys
import traceback
from pathlib import Path
from typing import List, Optional

import typer

from edge import __version__
from edge.errors import EdgeError
from edge.apps.terminal_progress import TerminalProgress

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    help="Export multimodal LLMs into bundles and run them offline on this machine.",
)

THREADS = typer.Option(0, "--threads", "-t", help="CPU threads for compute (0 = all cores).")
MAX_IMAGE_TOKENS = typer.Option(None, "--max-image-tokens", help="Most LLM positions one image may take (a smaller tile grid is chosen to fit).")
MAX_TILES = typer.Option(None, "--max-tiles", help="Most tiles one image may be cut into, the overview image included.")
PROVIDER = typer.Option([], "--provider", metavar="NAME[:K=V,...]", help=(
    "An onnxruntime execution provider for the vision/audio graphs, NAME[:key=value,...] (e.g. cuda:device_id=0); "
    "repeat in order of preference (default: cpu). A fallback is reported."))
VERBOSE = typer.Option(False, "--verbose", "-v", help=(
    "Also show where each graph runs and llama.cpp's own log on stderr (warnings always show)."))
BUNDLE = typer.Argument(None, help="Bundle directory. Omitted: the offline default model (SmolLM2-135M-Instruct), exported on first use.")


def _bundle(path: Optional[Path], threads: int, quiet: bool) -> Path:
    if path is not None:
        return path
    from edge.apps.defaults import default_bundle

    return default_bundle(TerminalProgress(quiet=quiet), threads)


@app.command()
def export(
    src: str = typer.Argument(..., help="A local Hugging Face checkpoint directory, a .gguf LLM file, or (online) a hub id."),
    out: Path = typer.Option(..., "--out", "-o", help="Bundle directory to write (written atomically)."),
    dtype: str = typer.Option("f16", "--dtype", help="Weight precision of the exported graphs: f32 or f16."),
    force: bool = typer.Option(False, "--force", help="Replace OUT if it is an existing bundle."),
    threads: int = THREADS,
    as_json: bool = typer.Option(False, "--json", help="Print the manifest as JSON on stdout."),
    quant: Optional[str] = typer.Option(None, "--quant", help="Also quantize with this recipe (q8, q4, q4-int4vision, npu-int8, npu-int8-a8); the fidelity report goes into the manifest."),
    provider: List[str] = PROVIDER,
    verbose: bool = VERBOSE,
) -> None:
    """Export a checkpoint into a bundle, then check parity against transformers.

    Example: edge export ./llava-1.5-7b-hf -o llava.bundle --dtype f16 --quant q4
    """
    from edge.apps import quantize_cmd
    from edge.apps.backends import command_options
    from edge.export.exporter import export as run_export
    from edge.options import ExportOptions

    options = ExportOptions(dtype=dtype, threads=threads, force=force,
                            runtime=command_options(threads, 0, provider, verbose))
    if quant is not None:
        manifest = quantize_cmd.export_quantized(src, out, options, quant, [], TerminalProgress(quiet=as_json))
    else:
        manifest = run_export(src, out, options, TerminalProgress(quiet=as_json))
    if as_json:
        print(manifest.to_json(), end="")
    else:
        quantize_cmd.print_export_summary(out, manifest, dtype, quant)


@app.command()
def quantize(
    bundle: Path = typer.Argument(..., help="The bundle to quantize (f32 or f16; it is only read)."),
    out: Path = typer.Option(..., "--out", "-o", help="The new bundle directory (written atomically)."),
    recipe: str = typer.Option(..., "--recipe", "-r", help="q8, q4, q4-int4vision, npu-int8 or npu-int8-a8 (see docs/quantization.md)."),
    image: List[Path] = typer.Option([], "--image", "-i", help="An image added to the generated calibration/fidelity set; repeat for several."),
    force: bool = typer.Option(False, "--force", help="Replace OUT if it is an existing bundle."),
    threads: int = THREADS,
    as_json: bool = typer.Option(False, "--json", help="Print the fidelity report as JSON on stdout."),
    provider: List[str] = PROVIDER,
    verbose: bool = VERBOSE,
) -> None:
    """Quantize a bundle into a new one and measure its fidelity against the original.

    Example: edge quantize llava.bundle -o llava-q4.bundle --recipe q4
    """
    from edge.apps import quantize_cmd
    from edge.apps.backends import command_options

    runtime = command_options(threads, 0, provider, verbose)
    quantize_cmd.quantize(bundle, out, recipe, image, force, threads, as_json, TerminalProgress(quiet=as_json), runtime)


@app.command()
def run(
    bundle: Optional[Path] = BUNDLE,
    prompt: str = typer.Option(..., "--prompt", "-p", help="The prompt; '-' reads it from stdin."),
    image: List[Path] = typer.Option([], "--image", "-i", help="An image file; repeat for several."),
    max_tokens: int = typer.Option(256, "--max-tokens", "-n", help="Most tokens to generate."),
    temperature: float = typer.Option(0.0, "--temperature", help="0 = greedy; higher = more random."),
    top_k: int = typer.Option(40, "--top-k", help="Sample among the k most likely tokens (0 = all)."),
    top_p: float = typer.Option(0.95, "--top-p", help="Nucleus sampling mass."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Random seed for sampling (reproducible output)."),
    no_template: bool = typer.Option(False, "--no-template", help="Send the prompt as is; images go where the family's placeholder (<image> for LLaVA) stands."),
    system: Optional[str] = typer.Option(None, "--system", help="A system message (with the chat template)."),
    ctx: int = typer.Option(0, "--ctx", help="Context size in tokens (0 = the model's, at most 4096)."),
    max_image_tokens: Optional[int] = MAX_IMAGE_TOKENS,
    max_tiles: Optional[int] = MAX_TILES,
    threads: int = THREADS,
    as_json: bool = typer.Option(False, "--json", help=(
        "Print one JSON object at the end (text, tokens, timings, where each graph ran) instead of streaming.")),
    provider: List[str] = PROVIDER,
    verbose: bool = VERBOSE,
) -> None:
    """Answer one prompt, streaming the answer to stdout.

    Example: edge run llava.bundle --image cat.jpg --prompt "What is in this picture?"
    """
    import edge
    from edge.apps.backends import command_options
    from edge.options import Budget
    from edge.options import GenerateOptions
    from edge.options import SamplingOptions

    runtime = command_options(threads, ctx, provider, verbose)
    if prompt == "-":
        prompt = sys.stdin.read()
    options = GenerateOptions(
        max_tokens=max_tokens,
        sampling=SamplingOptions(temperature=temperature, top_k=top_k, top_p=top_p, seed=seed),
        template=not no_template,
        system=system,
        budget=Budget(max_tiles=max_tiles, max_image_tokens=max_image_tokens),
    )
    pipe = edge.load(_bundle(bundle, threads, as_json), runtime)
    from edge.events import FinishEvent

    for ev in pipe.stream(prompt, [str(p) for p in image], options):
        if isinstance(ev, FinishEvent):
            if as_json:
                out = {"text": ev.text, "tokens": ev.tokens, "finish_reason": ev.reason,
                       "timings": ev.timings.as_dict(),
                       "placement": {k: p.as_dict() for k, p in pipe.placement.items()}}
                print(json.dumps(out, ensure_ascii=False))
            else:
                print(flush=True)
        elif not as_json:
            sys.stdout.write(ev.text)
            sys.stdout.flush()


@app.command()
def chat(
    bundle: Optional[Path] = BUNDLE,
    system: Optional[str] = typer.Option(None, "--system", help="A system message for the whole conversation."),
    max_tokens: int = typer.Option(512, "--max-tokens", "-n", help="Most tokens per answer."),
    temperature: float = typer.Option(0.0, "--temperature", help="0 = greedy; higher = more random."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Random seed for sampling."),
    ctx: int = typer.Option(0, "--ctx", help="Context size in tokens (0 = the model's, at most 4096)."),
    max_image_tokens: Optional[int] = MAX_IMAGE_TOKENS,
    max_tiles: Optional[int] = MAX_TILES,
    audio_bundle: Optional[Path] = typer.Option(None, "--audio-bundle", help="A Whisper bundle for spoken turns (/audio PATH, /mic)."),
    threads: int = THREADS,
    provider: List[str] = PROVIDER,
    verbose: bool = VERBOSE,
) -> None:
    """Chat in the terminal; the KV cache is kept so each turn only evaluates what is new.

    Commands: /image PATH (attach to the next message), /audio PATH and /mic (speak your
    message; with --audio-bundle), /reset, /quit.

    Example: edge chat            (the offline default model)
    """
    import edge
    from edge.apps.backends import command_options
    from edge.apps.repl import repl
    from edge.options import Budget
    from edge.options import GenerateOptions
    from edge.options import SamplingOptions

    options = GenerateOptions(
        max_tokens=max_tokens,
        sampling=SamplingOptions(temperature=temperature, seed=seed),
        budget=Budget(max_tiles=max_tiles, max_image_tokens=max_image_tokens),
    )
    runtime = command_options(threads, ctx, provider, verbose)
    pipe = edge.load(_bundle(bundle, threads, False), runtime, speech=audio_bundle)
    repl(pipe, options, system)


@app.command()
def transcribe(
    bundle: Path = typer.Argument(..., help="A Whisper bundle (edge export of a Whisper or CTranslate2 model)."),
    audio: Path = typer.Argument(..., help="An audio file: WAV, FLAC, OGG, MP3 (any rate, mono or stereo); long files stream."),
    language: Optional[str] = typer.Option(None, "--language", help="Language code for multilingual models (default: detect)."),
    task: str = typer.Option("transcribe", "--task", help="transcribe, or translate (to English; multilingual models)."),
    no_timestamps: bool = typer.Option(False, "--no-timestamps", help="Plain text without timed segments."),
    threads: int = THREADS,
    as_json: bool = typer.Option(False, "--json", help=(
        "Print one JSON object: text, segments with times, real-time factor, where each graph ran.")),
    provider: List[str] = PROVIDER,
    verbose: bool = VERBOSE,
) -> None:
    """Transcribe an audio file; segments print as each 30 s window is decoded.

    Example: edge transcribe whisper.bundle meeting.flac --json
    """
    from edge.apps import speech_cmd
    from edge.apps.backends import command_options
    from edge.options import TranscribeOptions

    backend = command_options(threads, 0, provider, verbose).audio
    options = TranscribeOptions(language=language, task=task, timestamps=not no_timestamps)
    speech_cmd.transcribe(bundle, audio, options, backend, as_json)


@app.command()
def listen(
    bundle: Path = typer.Argument(..., help="A Whisper bundle."),
    step: float = typer.Option(0.0, "--step", help="Seconds between partial transcripts (sliding windows); 0 = cut utterances at pauses (VAD)."),
    length: float = typer.Option(10.0, "--length", help="Window length in sliding mode; longest utterance in VAD mode (seconds, at most 30)."),
    keep: float = typer.Option(0.2, "--keep", help="Seconds of audio carried into the next window (sliding mode)."),
    silence: float = typer.Option(0.6, "--silence", help="Pause (seconds) that ends an utterance (VAD mode)."),
    threshold: float = typer.Option(-45.0, "--threshold", help="Quietest speech level in dBFS (VAD mode)."),
    max_lag: float = typer.Option(5.0, "--max-lag", help="Seconds of audio allowed to wait while transcription runs."),
    on_lag: str = typer.Option("drop", "--on-lag", help="When audio waits longer than --max-lag: drop (skip to live audio, with a warning) or keep."),
    device: Optional[str] = typer.Option(None, "--device", help="Input device name or index (default: the system's)."),
    wav: Optional[Path] = typer.Option(None, "--file", help="Replay this audio file at real-time pace instead of the microphone."),
    threads: int = THREADS,
    as_json: bool = typer.Option(False, "--json", help="One JSON object per transcript (start, end, final, text)."),
    provider: List[str] = PROVIDER,
    verbose: bool = VERBOSE,
) -> None:
    """Transcribe the microphone live, printing each utterance as it ends (Ctrl-C stops).

    Example: edge listen whisper.bundle --step 2 --length 8
    """
    from edge.apps import speech_cmd
    from edge.apps.backends import command_options
    from edge.options import StreamOptions
    from edge.options import TranscribeOptions

    backend = command_options(threads, 0, provider, verbose).audio

    stream = StreamOptions(step_s=step, length_s=length, keep_s=keep, silence_s=silence, threshold_db=threshold,
                           max_lag_s=max_lag, on_lag=on_lag, buffer_s=max(30.0, length, max_lag))
    speech_cmd.listen(bundle, stream, TranscribeOptions(), backend, as_json, wav=wav, device=device)


@app.command()
def inspect(
    bundle: Optional[Path] = typer.Argument(None, help="Bundle directory (not needed with --schema)."),
    verify: bool = typer.Option(False, "--verify", help="Also check the sha256 of every file."),
    as_json: bool = typer.Option(False, "--json", help="Print the manifest as JSON."),
    schema: bool = typer.Option(False, "--schema", help="Print the JSON Schema of manifest.json and exit."),
) -> None:
    """Show what a bundle holds and check it (sizes always, sha256 with --verify).

    Example: edge inspect llava.bundle --verify; edge inspect --schema > manifest.schema.json
    """
    from edge.bundle import load_manifest

    if schema:
        from edge.schema import schema_text

        print(schema_text(), end="")
        return
    if bundle is None:
        from edge.errors import InputError

        raise InputError("edge inspect needs a BUNDLE directory (or --schema)")
    _, m = load_manifest(bundle, verify=verify)
    if as_json:
        print(m.to_json(), end="")
        return
    print(f"{m.name}  family={m.family}  schema={m.schema_version}")
    if m.llm:
        print(f"llm     {m.llm.file}  {m.llm.arch} {m.llm.dtype}  n_embd={m.llm.n_embd} n_vocab={m.llm.n_vocab} ctx={m.llm.n_ctx_train}")
    if m.vision:
        v = m.vision
        print(f"vision  {v.file}  {v.dtype}  input={v.input.shape} tokens/image={v.tokens_per_image} marker={m.prompt.image_marker!r}")
    if m.audio:
        a = m.audio
        print(f"audio   {a.encoder} + {a.decoder}  {a.dtype}  mels={a.features.n_mels} layers={a.kv_cache.layers} "
              f"vocab={a.vocab_size} {'multilingual' if a.multilingual else 'English-only'}")
    for f in m.files.values():
        print(f"file    {f.path}  {f.bytes} bytes  sha256={f.sha256[:16]}...")
    for k, v in m.provenance.get("parity", {}).items():
        print(f"parity  {k} = {v}")
    print("verified: sha256 of every file matches" if verify else "checked: files present with the recorded sizes")


@app.command()
def doctor(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Versions, onnxruntime providers, llama.cpp build and CPU features.

    Example: edge doctor --json
    """
    import platform

    from edge.runtime import llama_backend as llm, onnx_backend as vision

    info = {
        "edge": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "onnxruntime": vision.backend_version(),
        "onnxruntime_providers": vision.available_providers(),
        "llama_cpp_python": llm.backend_version(),
        "llama_cpp_system_info": llm.system_info(),
    }
    for mod in ("torch", "transformers"):
        try:
            info[mod] = __import__(mod).__version__
        except ImportError:
            info[mod] = None
    if as_json:
        print(json.dumps(info, indent=2))
    else:
        for k, v in info.items():
            print(f"{k}: {v}")


from edge.apps.bench import bench  # noqa: E402  (`edge bench`, in its own module)

app.command()(bench)


def _kind(exc: BaseException) -> set[str]:
    # typer vendors click in recent releases and uses click itself in older ones:
    # recognise the command-line exceptions by class name, whichever module they are from.
    return {cls.__name__ for cls in type(exc).__mro__}


def main(argv: Optional[list[str]] = None) -> int:
    """Entry point: one-line errors on stderr and an exit code, never a traceback."""
    from edge.apps.backends import setup_logging

    setup_logging()  # warnings of every command reach stderr; --verbose raises the level
    command = typer.main.get_command(app)
    try:
        command.main(args=argv, prog_name="edge", standalone_mode=False)
        return 0
    except EdgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:
        kind = _kind(exc)
        if "NoArgsIsHelpError" in kind:
            ctx = getattr(exc, "ctx", None)
            print(ctx.get_help() if ctx else "", file=sys.stderr)
            return 2
        if "UsageError" in kind or "ClickException" in kind:
            print(f"error: {' '.join(exc.format_message().split())}", file=sys.stderr)
            return 2
        if "Abort" in kind:
            print("interrupted", file=sys.stderr)
            return 130
        if "Exit" in kind:
            return int(getattr(exc, "exit_code", 0) or 0)
        # a bug: say so in one line; EDGE_DEBUG=1 shows the traceback
        if os.environ.get("EDGE_DEBUG"):
            traceback.print_exc()
        print(f"error: internal error ({type(exc).__name__}: {' '.join(str(exc).split())[:300]}); "
              "set EDGE_DEBUG=1 for the traceback", file=sys.stderr)
        return 70


if __name__ == "__main__":
    sys.exit(main())
