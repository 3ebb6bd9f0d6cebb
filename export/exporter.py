"""``edge export``: a HF checkpoint (or a GGUF LLM) -> a verified bundle.

Flow: resolve the source (a foreign format such as CTranslate2 is converted to a HF
checkpoint first), read its config, and hand it to the path of its kind: speech
families (Whisper) to ``edge.export.speech``, everything else to :mod:`edge.export.vlm`.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from edge.bundle import check_output
from edge.export.registry import importer_for, speech_spec_for
from edge.export.source import load_hf, resolve
from edge.export.vlm import export_vlm
from edge.manifest import Manifest
from edge.options import ExportOptions
from edge.progress import NullProgress


def export(src: str, out: Path, options: ExportOptions = ExportOptions(), progress=NullProgress()) -> Manifest:
    """Export ``src`` into the bundle directory ``out`` (written atomically)."""
    import torch
    import transformers

    check_output(out, options.force)  # before any slow work
    torch.set_num_threads(options.threads or torch.get_num_threads())
    progress.stage(f"reading {src}")
    source = resolve(src)
    importer = None if source.gguf_file else importer_for(source.path)
    if importer is not None:  # a foreign format (CTranslate2...): convert to a HF checkpoint, export that
        with tempfile.TemporaryDirectory(prefix="edge-import-") as tmp:
            progress.stage(f"importing the {importer.name} model in {source.path}")
            hf_dir = importer.convert(source.path, Path(tmp) / f"{source.path.parent.name}.{source.label}")
            return export(str(hf_dir), out, options, progress)
    config = load_hf(lambda: transformers.AutoConfig.from_pretrained(source.path, **source.hf_kwargs()), "config")
    speech = speech_spec_for(getattr(config, "model_type", "?"))
    if speech is not None:  # speech families (Whisper) write their own kind of bundle
        return speech.export(source, config, out, options, progress)
    return export_vlm(source, config, out, options, progress)
