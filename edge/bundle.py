"""Reading, verifying and atomically writing bundle directories."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

from edge.errors import BundleError, EdgeError
from edge.manifest import MANIFEST_NAME, FileEntry, Manifest


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks so large GGUFs do not fill memory."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def file_entries(root: Path) -> dict[str, FileEntry]:
    """Describe every file below ``root`` (but the manifest) with its size and sha256."""
    entries = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name != MANIFEST_NAME:
            rel = p.relative_to(root).as_posix()
            entries[rel] = FileEntry(path=rel, bytes=p.stat().st_size, sha256=sha256_of(p))
    return entries


def load_manifest(bundle: str | os.PathLike, verify: bool = False) -> tuple[Path, Manifest]:
    """Read ``bundle/manifest.json`` and check the bundle against it.

    Always checks that the schema is known and every file exists with the
    recorded size (which catches truncated GGUF/ONNX files before a backend
    reads them); with ``verify`` also checks every sha256.
    """
    root = Path(bundle)
    if not root.exists():
        raise BundleError(f"bundle not found: {root}")
    if not root.is_dir():
        raise BundleError(f"not a bundle directory: {root}")
    mpath = root / MANIFEST_NAME
    if not mpath.is_file():
        raise BundleError(f"not a bundle: {mpath} is missing")
    try:
        text = mpath.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BundleError(f"cannot read {mpath}: {exc}") from None
    manifest = Manifest.from_json(text)
    check_files(root, manifest, verify=verify)
    return root, manifest


def check_files(root: Path, manifest: Manifest, verify: bool = False) -> None:
    """Raise :class:`BundleError` if a listed file is missing, resized or (``verify``) altered."""
    needed = set(manifest.component_files())
    for name in sorted(needed - set(manifest.files)):
        raise BundleError(f"manifest.json does not list {name} in files")
    for rel, entry in manifest.files.items():
        p = root / rel
        if not p.is_file():
            raise BundleError(f"bundle file missing: {p}")
        size = p.stat().st_size
        if size != entry.bytes:
            raise BundleError(
                f"bundle file {rel} is {size} bytes but the manifest says {entry.bytes} "
                "(truncated or replaced; re-export the bundle)"
            )
        if verify and sha256_of(p) != entry.sha256:
            raise BundleError(f"bundle file {rel} does not match its sha256 in the manifest")


def check_output(out: str | os.PathLike, overwrite: bool) -> Path:
    """Fail early if ``out`` may not be written: it exists (without ``overwrite``) or is no bundle."""
    out = Path(out).absolute()
    if out.exists() and not overwrite:
        raise BundleError(f"output exists: {out} (pass --force to replace it)")
    if out.exists() and not (out / MANIFEST_NAME).is_file():
        raise BundleError(f"refusing to replace {out}: it is not a bundle")
    return out


def write_bundle(
    out: str | os.PathLike,
    populate: Callable[[Path], Manifest],
    overwrite: bool = False,
) -> Manifest:
    """Write a bundle atomically.

    ``populate(tmpdir)`` writes the component files into a temporary directory
    next to ``out`` and returns the manifest (its ``files`` are filled in here).
    Only when everything succeeded is the directory renamed into place, so an
    error or an interrupt never leaves a half-written bundle, and an existing
    ``out`` is replaced only with ``overwrite`` and only at the very end.
    """
    out = check_output(out, overwrite)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; a bundle is a normal dir
    except OSError as exc:
        raise BundleError(f"cannot write to {out.parent}: {exc.strerror or exc}") from None
    try:
        manifest = populate(tmp)
        manifest = dataclasses.replace(manifest, files=file_entries(tmp))
        (tmp / MANIFEST_NAME).write_text(manifest.to_json(), encoding="utf-8")
        _swap_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def _swap_into_place(tmp: Path, out: Path) -> None:
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
    try:
        os.replace(tmp, out)
    except OSError as exc:
        if old is not None:
            os.replace(old, out)
        raise EdgeError(f"cannot move the new bundle into {out}: {exc}") from None
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
