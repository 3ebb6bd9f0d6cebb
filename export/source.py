"""Where a checkpoint comes from: a local HF directory, a GGUF file, or (online) a hub id."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from edge.errors import ExportError, InputError

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class Source:
    """A resolved checkpoint: ``path`` is a directory; ``gguf_file`` names a GGUF in it."""

    label: str
    path: Path
    gguf_file: Optional[str] = None

    def hf_kwargs(self) -> dict[str, Any]:
        """Extra ``from_pretrained`` arguments (transformers reads GGUF with ``gguf_file=``)."""
        return {"gguf_file": self.gguf_file} if self.gguf_file else {}


def resolve(src: str) -> Source:
    """Turn the user's SRC into a :class:`Source`, downloading only for a hub id."""
    p = Path(src).expanduser()
    if p.is_file():
        if p.suffix != ".gguf":
            raise ExportError(f"{p} is a file but not a .gguf; pass a HF checkpoint directory or a GGUF file")
        return Source(label=p.name, path=p.parent.absolute(), gguf_file=p.name)
    if p.is_dir():
        if not (p / "config.json").is_file():
            raise ExportError(f"{p} is not a Hugging Face checkpoint (no config.json)")
        return Source(label=p.name, path=p.absolute())
    if _HUB_ID.match(src) and not src.startswith((".", "/", "~")):
        return Source(label=src, path=_download(src))
    raise ExportError(f"source not found: {src} (a local directory, a .gguf file, or a hub id like org/name)")


def _download(repo_id: str) -> Path:
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise ExportError("downloading from the hub needs huggingface_hub (pip install 'edge-mllm[export]')") from None
    patterns = ["*.json", "*.safetensors", "*.model", "*.jinja", "*.txt"]
    try:
        return Path(snapshot_download(repo_id, allow_patterns=patterns))
    except Exception as exc:
        raise ExportError(
            f"{repo_id} is not a local path and could not be fetched from the hub "
            f"(offline? pass a local checkpoint directory): {type(exc).__name__}"
        ) from None


def gguf_fields(path: Path) -> dict[str, Any]:
    """The key/value metadata of a GGUF file, as Python values."""
    import gguf

    try:
        reader = gguf.GGUFReader(str(path))
    except Exception as exc:
        raise ExportError(f"cannot read GGUF {path.name}: {exc}") from None
    out = {}
    for key, f in reader.fields.items():
        try:
            out[key] = f.contents()
        except Exception:  # a few internal fields have no plain value
            continue
    return out


def load_hf(fn, what: str):
    """Call a transformers loader; whatever it raises becomes one :class:`ExportError` line."""
    try:
        return fn()
    except (ExportError, InputError):
        raise
    except Exception as exc:  # transformers raises many kinds; keep it one line
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ExportError(f"cannot load the {what}: {msg}") from None
