"""Bad input through the CLI: a one-line error on stderr, a non-zero exit, no traceback,
and nothing in the bundle changes."""

from __future__ import annotations

import hashlib
import json
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli
from PIL import Image


def _digest(root: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def _assert_clean_error(proc, code=None, contains: str = ""):
    assert proc.returncode != 0, proc.stdout
    if code is not None:
        assert proc.returncode == code, proc.stderr
    lines = [l for l in proc.stderr.strip().splitlines() if l.strip()]
    # progress lines ("edge: ...") may come first; the error is exactly one last line
    assert all(l.startswith("edge: ") for l in lines[:-1]), proc.stderr
    assert lines[-1].startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr
    assert contains.lower() in lines[-1].lower(), lines[-1]


@pytest.fixture(scope="module")
def bad_images(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("bad")
    good = d / "good.png"
    Image.fromarray(np.full((40, 40, 3), 128, np.uint8)).save(good)
    jpg = d / "good.jpg"
    Image.fromarray(np.full((64, 64, 3), 90, np.uint8)).save(jpg)
    (d / "empty.png").write_bytes(b"")
    (d / "text.png").write_text("this is not an image\n")
    (d / "trunc.png").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    (d / "trunc.jpg").write_bytes(jpg.read_bytes()[: jpg.stat().st_size // 2])
    # decompression bomb: a tiny PNG whose header claims 100000 x 100000 pixels
    raw = bytearray((d / "good.png").read_bytes())
    ihdr = raw.index(b"IHDR")
    raw[ihdr + 4 : ihdr + 12] = struct.pack(">II", 100_000, 100_000)
    raw[ihdr + 17 : ihdr + 21] = struct.pack(">I", zlib.crc32(bytes(raw[ihdr : ihdr + 17])))
    (d / "bomb.png").write_bytes(bytes(raw))
    one = d / "one.png"
    Image.fromarray(np.array([[[255, 0, 0]]], np.uint8)).save(one)
    return {p.stem + p.suffix.replace(".", "_"): p for p in d.iterdir()} | {"missing": d / "missing.png"}


RUN = ["--prompt", "What is this?", "--max-tokens", "4", "--threads", "2"]


@pytest.mark.parametrize("name", ["missing", "empty_png", "text_png", "trunc_png", "trunc_jpg", "bomb_png"])
def test_bad_image_files(tiny_llava_bundle, bad_images, name):
    before = _digest(tiny_llava_bundle)
    proc = run_cli("run", str(tiny_llava_bundle), "--image", str(bad_images[name]), *RUN)
    _assert_clean_error(proc, code=2)
    assert _digest(tiny_llava_bundle) == before


def test_a_directory_is_not_an_image(tiny_llava_bundle, tmp_path):
    _assert_clean_error(run_cli("run", str(tiny_llava_bundle), "--image", str(tmp_path), *RUN), code=2)


def test_one_pixel_image_works(tiny_llava_bundle, bad_images):
    proc = run_cli("run", str(tiny_llava_bundle), "--image", str(bad_images["one_png"]), *RUN, "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["timings"]["images"] == 1


def test_missing_bundle(tmp_path):
    _assert_clean_error(run_cli("run", str(tmp_path / "nope"), *RUN), code=3, contains="not found")


def test_directory_without_manifest(tmp_path):
    _assert_clean_error(run_cli("run", str(tmp_path), *RUN), code=3, contains="manifest.json")


def _copy(bundle: Path, dst: Path) -> Path:
    shutil.copytree(bundle, dst)
    return dst


def test_unknown_schema_version(tiny_llava_bundle, tmp_path):
    b = _copy(tiny_llava_bundle, tmp_path / "b")
    m = json.loads((b / "manifest.json").read_text())
    m["schema_version"] = 99
    (b / "manifest.json").write_text(json.dumps(m))
    before = _digest(b)
    _assert_clean_error(run_cli("run", str(b), *RUN), code=3, contains="schema_version")
    _assert_clean_error(run_cli("inspect", str(b)), code=3, contains="schema_version")
    assert _digest(b) == before


def test_manifest_not_json(tiny_llava_bundle, tmp_path):
    b = _copy(tiny_llava_bundle, tmp_path / "b")
    (b / "manifest.json").write_text("{not json")
    _assert_clean_error(run_cli("inspect", str(b)), code=3, contains="not valid JSON")


@pytest.mark.parametrize("component", ["llm", "vision"])
def test_truncated_component(tiny_llava_bundle, tmp_path, component):
    b = _copy(tiny_llava_bundle, tmp_path / "b")
    name = json.loads((b / "manifest.json").read_text())[component]["file"]
    data = (b / name).read_bytes()
    (b / name).write_bytes(data[: len(data) // 3])
    before = _digest(b)
    _assert_clean_error(run_cli("run", str(b), *RUN), code=3, contains=name)
    _assert_clean_error(run_cli("inspect", str(b), "--verify"), code=3, contains=name)
    assert _digest(b) == before


def test_corrupted_file_is_caught_by_verify(tiny_llava_bundle, tmp_path):
    b = _copy(tiny_llava_bundle, tmp_path / "b")
    name = json.loads((b / "manifest.json").read_text())["vision"]["file"]
    data = bytearray((b / name).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (b / name).write_bytes(bytes(data))
    assert run_cli("inspect", str(b)).returncode == 0  # sizes still match
    _assert_clean_error(run_cli("inspect", str(b), "--verify"), code=3, contains="sha256")


@pytest.mark.parametrize(
    "args",
    [
        ["--max-tokens", "0"],
        ["--max-tokens", "-5"],
        ["--max-tokens", "lots"],
        ["--temperature", "-1"],
        ["--temperature", "nan"],
        ["--top-p", "2"],
        ["--top-k", "-3"],
        ["--seed", "-1"],
        ["--threads", "-2"],
        ["--ctx", "3"],
    ],
)
def test_nonsense_numeric_options(tiny_llava_bundle, args):
    before = _digest(tiny_llava_bundle)
    proc = run_cli("run", str(tiny_llava_bundle), "--prompt", "hi", *args)
    _assert_clean_error(proc, code=2)
    assert _digest(tiny_llava_bundle) == before


def test_more_images_than_placeholders(tiny_llava_bundle, bad_images):
    proc = run_cli(
        "run",
        str(tiny_llava_bundle),
        "--no-template",
        "--prompt",
        "USER: <image> hi ASSISTANT:",
        "--image",
        str(bad_images["good_png"]),
        "--image",
        str(bad_images["good_jpg"]),
        "--threads",
        "2",
    )
    _assert_clean_error(proc, code=2, contains="placeholder")


def test_placeholders_without_images(tiny_llava_bundle):
    proc = run_cli("run", str(tiny_llava_bundle), "--no-template", "--prompt", "USER: <image> hi ASSISTANT:")
    _assert_clean_error(proc, code=2, contains="placeholder")


def test_prompt_longer_than_the_context(tiny_llava_bundle):
    proc = run_cli("run", str(tiny_llava_bundle), "--prompt", "word " * 400, "--ctx", "128", "--threads", "2")
    _assert_clean_error(proc, code=2, contains="context")


def test_image_into_a_text_only_bundle(tiny_llama_bundle, bad_images):
    proc = run_cli("run", str(tiny_llama_bundle), "--image", str(bad_images["good_png"]), *RUN)
    _assert_clean_error(proc, code=2, contains="no vision")


def test_export_errors(tmp_path, tiny_llava_bundle):
    _assert_clean_error(
        run_cli("export", str(tmp_path / "nothing"), "-o", str(tmp_path / "o")), code=4, contains="not found"
    )
    _assert_clean_error(run_cli("export", str(tmp_path), "-o", str(tmp_path / "o")), code=4, contains="config.json")
    _assert_clean_error(run_cli("export", "some-org/some-model", "-o", str(tmp_path / "o")), code=4)
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "config.json").write_text(json.dumps({"model_type": "bert"}))
    _assert_clean_error(
        run_cli("export", str(tmp_path / "cfg"), "-o", str(tmp_path / "o")), code=4, contains="unsupported"
    )
    _assert_clean_error(run_cli("export", str(tmp_path / "cfg"), "-o", str(tmp_path / "o"), "--dtype", "f8"), code=2)
    # an existing output is never replaced without --force
    before = _digest(tiny_llava_bundle)
    _assert_clean_error(run_cli("export", str(tmp_path / "cfg"), "-o", str(tiny_llava_bundle)), contains="exists")
    assert _digest(tiny_llava_bundle) == before
