"""Fetch and unpack the llama-cpp-python sdist of the installed version (at install time, online).

The tokenizer tests read llama.cpp's real vocabulary files (``vendor/llama.cpp/models/
ggml-vocab-*.gguf`` and their ``.inp``/``.out`` test cases) from it. Usage::

    python tests/fetch_llama_sources.py [--dest DIR]

It runs ``pip download --no-binary :all: --no-deps llama-cpp-python==<installed version>``
into DIR (default ``~/.cache/edge/sources``), unpacks the archive unless that is done
already, and prints the path of the unpacked sdist. Tests never download anything.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tarfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

DEFAULT_DEST = Path.home() / ".cache" / "edge" / "sources"


def fetch(dest: Path) -> Path:
    """The unpacked sdist directory of the installed llama-cpp-python, fetched if needed."""
    try:
        ver = version("llama-cpp-python")
    except PackageNotFoundError:
        sys.exit("error: llama-cpp-python is not installed")
    unpacked = dest / f"llama_cpp_python-{ver}"
    if (unpacked / "vendor" / "llama.cpp" / "models").is_dir():
        return unpacked
    dest.mkdir(parents=True, exist_ok=True)
    archives = sorted(dest.glob(f"llama_cpp_python-{ver}.tar.gz")) + sorted(dest.glob(f"llama-cpp-python-{ver}.tar.gz"))
    if not archives:
        cmd = [sys.executable, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps", "--dest", str(dest)]
        subprocess.run([*cmd, f"llama-cpp-python=={ver}"], check=True)
        archives = sorted(dest.glob(f"llama*cpp*python-{ver}.tar.gz"))
    if not archives:
        sys.exit(f"error: pip left no llama-cpp-python {ver} sdist in {dest}")
    with tarfile.open(archives[0]) as tar:
        tar.extractall(dest, filter="data")
    found = next((p for p in dest.glob(f"llama*cpp*python-{ver}") if p.is_dir()), None)
    if found is None:
        sys.exit(f"error: the sdist in {archives[0]} did not unpack to llama_cpp_python-{ver}")
    if found != unpacked:
        found.rename(unpacked)
    return unpacked


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", type=Path, default=DEFAULT_DEST, help="cache directory (default: %(default)s)")
    print(fetch(parser.parse_args().dest))


if __name__ == "__main__":
    main()
