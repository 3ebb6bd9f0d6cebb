"""The work behind ``edge quantize`` and ``edge export --quant`` (the commands live in cli.py)."""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Optional, Sequence

from edge.bundle import check_output
from edge.errors import BundleError
from edge.manifest import Manifest
from edge.options import RuntimeOptions


def quantize(
    bundle: Path,
    out: Path,
    recipe: str,
    images: Sequence[Path],
    force: bool,
    threads: int,
    as_json: bool,
    progress,
    runtime: Optional[RuntimeOptions] = None,
    fidelity: str = "quick",
    llm_type: Optional[str] = None,
) -> None:
    """Quantize ``bundle`` into ``out``; print the fidelity report (JSON with ``as_json``) on stdout.

    ``threads`` is the quantizer's; ``runtime`` how both bundles run for the fidelity figures,
    ``fidelity`` how thorough they are (quick or full), ``llm_type`` a GGUF type instead of the recipe's.
    """
    from edge.options import QuantizeOptions
    from edge.quantize.api import quantize_bundle, summary_lines
    from edge.quantize.recipes import recipe_with_llm_type

    options = QuantizeOptions(
        threads=threads, force=force, images=tuple(str(p) for p in images), runtime=runtime, fidelity=fidelity
    )
    manifest = quantize_bundle(bundle, out, recipe_with_llm_type(recipe, llm_type), options, progress)
    report = manifest.provenance["fidelity"]
    if as_json:
        print(json.dumps(report, indent=2))
        return
    print(f"wrote {out} ({manifest.family}, recipe {recipe})", file=sys.stderr)
    for line in summary_lines(report):
        print(line)


def export_quantized(
    src: str,
    out: Path,
    export_options,
    recipe: str,
    images: Sequence[Path],
    progress,
    fidelity: str = "quick",
    llm_type: Optional[str] = None,
) -> Manifest:
    """Export ``src`` into a temporary bundle next to ``out``, then quantize it into ``out``
    (``fidelity``: how thorough the fidelity report is, quick or full).

    The unquantized bundle is the reference of the fidelity report and is removed at the
    end, whatever happens; ``out`` is written atomically as by any quantization.
    """
    from edge.export.exporter import export
    from edge.options import QuantizeOptions
    from edge.quantize.api import quantize_bundle
    from edge.quantize.recipes import recipe_with_llm_type

    # an unknown recipe or type (or fidelity mode) fails before the slow export
    chosen = recipe_with_llm_type(recipe, llm_type)
    QuantizeOptions(fidelity=fidelity)
    out = check_output(out, export_options.force)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".unquantized", dir=out.parent))
    except OSError as exc:
        raise BundleError(f"cannot write to {out.parent}: {exc.strerror or exc}") from None
    try:
        reference = work / "bundle"
        export(src, reference, dataclasses.replace(export_options, force=False), progress)
        options = QuantizeOptions(
            threads=export_options.threads,
            force=export_options.force,
            images=tuple(str(p) for p in images),
            name=export_options.name,
            runtime=export_options.runtime,
            fidelity=fidelity,
        )
        return quantize_bundle(reference, out, chosen, options, progress)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def print_export_summary(out: Path, manifest: Manifest, dtype: str, quant: Optional[str]) -> None:
    """What ``edge export`` prints on stderr without ``--json``."""
    from edge.quantize.api import summary_lines

    print(f"wrote {out} ({manifest.family}, {dtype}{', recipe ' + quant if quant else ''})", file=sys.stderr)
    for k, v in manifest.provenance.get("parity", {}).items():
        print(f"  {k}: {v}", file=sys.stderr)
    if quant:
        for line in summary_lines(manifest.provenance.get("fidelity", {})):
            print(f"  {line}", file=sys.stderr)
