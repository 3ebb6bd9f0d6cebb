"""`edge export`, `edge quantize`, `edge inspect`: making and looking at bundles (`edge doctor`: apps/device_cmds.py)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from edge.apps.cli_options import FIDELITY, PROVIDER, THREADS, VERBOSE
from edge.apps.terminal_progress import TerminalProgress

LLM_TYPE = typer.Option(
    None,
    "--llm-type",
    help="The LLM's GGUF type instead of the recipe's (Q4_0, Q4_K_M, Q5_K_M, Q8_0, Q6_K, ...; docs/quantization.md "
    "has the figures per type and CPU).",
)


def export(
    src: str = typer.Argument(
        ..., help="A local Hugging Face checkpoint directory, a .gguf LLM file, or (online) a hub id."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Bundle directory to write (written atomically)."),
    dtype: str = typer.Option("f16", "--dtype", help="Weight precision of the exported graphs: f32 or f16."),
    force: bool = typer.Option(False, "--force", help="Replace OUT if it is an existing bundle."),
    threads: int = THREADS,
    as_json: bool = typer.Option(False, "--json", help="Print the manifest as JSON on stdout."),
    quant: Optional[str] = typer.Option(
        None,
        "--quant",
        help="Also quantize with this recipe (q8, q4, q4-int4vision, npu-int8, npu-int8-a8); the fidelity report goes into the manifest.",
    ),
    fidelity: str = FIDELITY,
    provider: List[str] = PROVIDER,
    verbose: bool = VERBOSE,
    llm_type: Optional[str] = LLM_TYPE,
    mmproj: bool = typer.Option(
        True,
        "--mmproj/--no-mmproj",
        help="Also write the vision tower + projector as llama.cpp's mmproj GGUF (for llama.cpp's tools and "
        "the native library; families llama.cpp knows), with its parity figures. --no-mmproj skips it.",
    ),
) -> None:
    """Export a checkpoint into a bundle, then check parity against transformers.

    Example: edge export ./llava-1.5-7b-hf -o llava.bundle --dtype f16 --quant q4
    """
    from edge.apps import quantize_flow
    from edge.apps.backends import command_options
    from edge.export.exporter import export as run_export
    from edge.options import ExportOptions

    options = ExportOptions(
        dtype=dtype,
        threads=threads,
        force=force,
        runtime=command_options(threads, 0, provider, verbose),
        mmproj=mmproj,
    )
    if quant is not None:
        manifest = quantize_flow.export_quantized(
            src, out, options, quant, [], TerminalProgress(quiet=as_json), fidelity=fidelity, llm_type=llm_type
        )
    else:
        manifest = run_export(src, out, options, TerminalProgress(quiet=as_json))
    if as_json:
        print(manifest.to_json(), end="")
    else:
        quantize_flow.print_export_summary(out, manifest, dtype, quant)


def quantize(
    bundle: Path = typer.Argument(..., help="The bundle to quantize (f32 or f16; it is only read)."),
    out: Path = typer.Option(..., "--out", "-o", help="The new bundle directory (written atomically)."),
    recipe: str = typer.Option(
        ..., "--recipe", "-r", help="q8, q4, q4-int4vision, npu-int8 or npu-int8-a8 (see docs/quantization.md)."
    ),
    image: List[Path] = typer.Option(
        [], "--image", "-i", help="An image added to the generated calibration/fidelity set; repeat for several."
    ),
    force: bool = typer.Option(False, "--force", help="Replace OUT if it is an existing bundle."),
    threads: int = THREADS,
    as_json: bool = typer.Option(False, "--json", help="Print the fidelity report as JSON on stdout."),
    fidelity: str = FIDELITY,
    provider: List[str] = PROVIDER,
    verbose: bool = VERBOSE,
    llm_type: Optional[str] = LLM_TYPE,
) -> None:
    """Quantize a bundle into a new one and measure its fidelity against the original.

    Example: edge quantize llava.bundle -o llava-q4.bundle --recipe q4
    """
    from edge.apps import quantize_flow
    from edge.apps.backends import command_options

    runtime = command_options(threads, 0, provider, verbose)
    quantize_flow.quantize(
        bundle, out, recipe, image, force, threads, as_json, TerminalProgress(quiet=as_json), runtime, fidelity,
        llm_type=llm_type,
    )  # fmt: skip


def inspect(
    bundle: Optional[Path] = typer.Argument(
        None, help="Bundle directory. Omitted: the offline default model, exported on first use (not with --schema)."
    ),
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
    from edge.apps.cli_options import resolve_bundle

    root, m = load_manifest(resolve_bundle(bundle, 0, as_json), verify=verify)
    if as_json:
        print(m.to_json(), end="")
        return
    print(f"{m.name}  family={m.family}  schema={m.schema_version}  path={root}")
    if m.llm:
        print(
            f"llm     {m.llm.file}  {m.llm.arch} {m.llm.dtype}  n_embd={m.llm.n_embd} n_vocab={m.llm.n_vocab} ctx={m.llm.n_ctx_train}"
        )
    if m.vision:
        v = m.vision
        print(
            f"vision  {v.file}  {v.dtype}  input={v.input.shape} tokens/image={v.tokens_per_image} marker={m.prompt.image_marker!r}"
        )
    if m.audio:
        a = m.audio
        print(
            f"audio   {a.encoder} + {a.decoder}  {a.dtype}  mels={a.features.n_mels} layers={a.kv_cache.layers} "
            f"vocab={a.vocab_size} {'multilingual' if a.multilingual else 'English-only'}"
        )
    for f in m.files.values():
        print(f"file    {f.path}  {f.bytes} bytes  sha256={f.sha256[:16]}...")
    for k, v in m.provenance.get("parity", {}).items():
        print(f"parity  {k} = {v}")
    print("verified: sha256 of every file matches" if verify else "checked: files present with the recorded sizes")
