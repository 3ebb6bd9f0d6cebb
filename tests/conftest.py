"""Session-scoped fixtures: tiny models and their bundles are built once per test run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edge.export.builders import tiny
from edge.export.builders.tiny_whisper import tiny_whisper

THREADS = "2"
# Tests are offline: make the hub libraries fail fast instead of trying the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def run_cli(
    *args: str, stdin: str | None = None, timeout: float = 600, env: dict | None = None
) -> subprocess.CompletedProcess:
    """Run the ``edge`` CLI in a fresh process, as a user would."""
    env = dict(os.environ, EDGE_DEBUG="", **(env or {}))
    return subprocess.run(
        [sys.executable, "-m", "edge.apps.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def export_bundle(src: Path, out: Path, dtype: str = "f32") -> Path:
    proc = run_cli("export", str(src), "-o", str(out), "--dtype", dtype, "--threads", THREADS)
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.fixture(scope="session")
def tiny_llava_dir(tmp_path_factory) -> Path:
    return tiny.tiny_llava(tmp_path_factory.mktemp("tiny_llava"))


@pytest.fixture(scope="session")
def tiny_llava_bundle(tiny_llava_dir, tmp_path_factory) -> Path:
    return export_bundle(tiny_llava_dir, tmp_path_factory.mktemp("bundles") / "llava-f32")


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory) -> Path:
    return tiny.tiny_llama(tmp_path_factory.mktemp("tiny_llama"))


@pytest.fixture(scope="session")
def tiny_llama_bundle(tiny_llama_dir, tmp_path_factory) -> Path:
    return export_bundle(tiny_llama_dir, tmp_path_factory.mktemp("bundles") / "llama-f32")


@pytest.fixture(scope="session")
def smollm2_bundle(tmp_path_factory) -> Path:
    """The real SmolLM2-135M-Instruct f16 bundle, made the way a new user gets it: the
    first `edge run` without a bundle exports the default model into the cache."""
    cache = tmp_path_factory.mktemp("edge-cache")
    env = {"EDGE_CACHE": str(cache)}
    proc = run_cli(
        "run",
        "--prompt",
        "The capital of France is",
        "--no-template",
        "--max-tokens",
        "4",
        "--threads",
        THREADS,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    assert "first run" in proc.stderr
    bundles = list((cache / "bundles").iterdir())
    assert len(bundles) == 1
    return bundles[0]


@pytest.fixture(scope="session")
def tiny_idefics3_dir(tmp_path_factory) -> Path:
    return tiny.tiny_idefics3(tmp_path_factory.mktemp("tiny_idefics3"))


@pytest.fixture(scope="session")
def tiny_idefics3_bundle(tiny_idefics3_dir, tmp_path_factory) -> Path:
    return export_bundle(tiny_idefics3_dir, tmp_path_factory.mktemp("bundles") / "idefics3-f32")


@pytest.fixture(scope="session")
def tiny_smolvlm_dir(tmp_path_factory) -> Path:
    from edge.export.builders.tiny_smolvlm import tiny_smolvlm

    return tiny_smolvlm(tmp_path_factory.mktemp("tiny_smolvlm"))


@pytest.fixture(scope="session")
def tiny_smolvlm_bundle(tiny_smolvlm_dir, tmp_path_factory) -> Path:
    return export_bundle(tiny_smolvlm_dir, tmp_path_factory.mktemp("bundles") / "smolvlm-f32")


@pytest.fixture(scope="session")
def tiny_qwen2_5_vl_dir(tmp_path_factory) -> Path:
    from edge.export.builders.tiny_qwen2_5_vl import tiny_qwen2_5_vl

    return tiny_qwen2_5_vl(tmp_path_factory.mktemp("tiny_qwen2_5_vl"))


@pytest.fixture(scope="session")
def tiny_qwen2_5_vl_bundle(tiny_qwen2_5_vl_dir, tmp_path_factory) -> Path:
    return export_bundle(tiny_qwen2_5_vl_dir, tmp_path_factory.mktemp("bundles") / "qwen2_5_vl-f32")


@pytest.fixture(scope="session")
def tiny_qwen2_5_vl_w112_dir(tmp_path_factory) -> Path:
    """Qwen2.5-VL with 112-px attention windows, the only window llama.cpp's clip runs: its bundle carries a
    projector GGUF (the 32-px tower above gets none)."""
    from edge.export.builders.tiny_qwen2_5_vl import tiny_qwen2_5_vl

    return tiny_qwen2_5_vl(tmp_path_factory.mktemp("tiny_qwen2_5_vl_w112"), window=112)


@pytest.fixture(scope="session")
def tiny_qwen2_5_vl_w112_bundle(tiny_qwen2_5_vl_w112_dir, tmp_path_factory) -> Path:
    return export_bundle(tiny_qwen2_5_vl_w112_dir, tmp_path_factory.mktemp("bundles") / "qwen2_5_vl-w112-f32")


@pytest.fixture(scope="session")
def tiny_llava_next_dir(tmp_path_factory) -> Path:
    return tiny.tiny_llava_next(tmp_path_factory.mktemp("tiny_llava_next"))


@pytest.fixture(scope="session")
def tiny_llava_next_bundle(tiny_llava_next_dir, tmp_path_factory) -> Path:
    return export_bundle(tiny_llava_next_dir, tmp_path_factory.mktemp("bundles") / "llava-next-f32")


@pytest.fixture(scope="session")
def tiny_whisper_dir(tmp_path_factory) -> Path:
    return tiny_whisper(tmp_path_factory.mktemp("tiny_whisper"))


@pytest.fixture(scope="session")
def tiny_whisper_bundle(tiny_whisper_dir, tmp_path_factory) -> Path:
    return export_bundle(tiny_whisper_dir, tmp_path_factory.mktemp("bundles") / "whisper-f32")


@pytest.fixture(scope="session")
def tiny_gemma3_dir(tmp_path_factory) -> Path:
    from edge.export.builders.tiny_gemma3 import tiny_gemma3

    return tiny_gemma3(tmp_path_factory.mktemp("tiny_gemma3"))


@pytest.fixture(scope="session")
def tiny_gemma3_bundle(tiny_gemma3_dir, tmp_path_factory) -> Path:
    return export_bundle(tiny_gemma3_dir, tmp_path_factory.mktemp("bundles") / "gemma3-f32")


@pytest.fixture(scope="session")
def tiny_gemma3_pas_dir(tmp_path_factory) -> Path:
    """The tiny Gemma 3 with pan-and-scan on in its image processor config."""
    from edge.export.builders.tiny_gemma3 import tiny_gemma3

    return tiny_gemma3(tmp_path_factory.mktemp("tiny_gemma3_pas"), pan_and_scan=True)


@pytest.fixture(scope="session")
def tiny_gemma3_pas_bundle(tiny_gemma3_pas_dir, tmp_path_factory) -> Path:
    return export_bundle(tiny_gemma3_pas_dir, tmp_path_factory.mktemp("bundles") / "gemma3-pas-f32")


@pytest.fixture(scope="session")
def tiny_gemma3_text_dir(tmp_path_factory) -> Path:
    from edge.export.builders.tiny_gemma3 import tiny_gemma3_text

    return tiny_gemma3_text(tmp_path_factory.mktemp("tiny_gemma3_text"))


@pytest.fixture(scope="session")
def tiny_gemma3_text_bundle(tiny_gemma3_text_dir, tmp_path_factory) -> Path:
    return export_bundle(tiny_gemma3_text_dir, tmp_path_factory.mktemp("bundles") / "gemma3-text-f32")


SPEECH_DIR = Path(__file__).parent / "data" / "speech"


@pytest.fixture(scope="session")
def speech_fixtures() -> dict[str, str]:
    """The committed espeak-ng recordings (tests/data/speech) and their texts, by path."""
    import json

    texts = json.loads((SPEECH_DIR / "texts.json").read_text())["texts"]
    return {str(SPEECH_DIR / name): text for name, text in texts.items()}


@pytest.fixture(scope="session")
def photo(tmp_path_factory) -> Path:
    """A seeded random RGB image of an odd size."""
    path = tmp_path_factory.mktemp("images") / "photo.png"
    rng = np.random.default_rng(7)
    Image.fromarray((rng.random((47, 61, 3)) * 255).astype(np.uint8)).save(path)
    return path


@pytest.fixture(scope="session")
def photo2(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("images") / "photo2.jpg"
    yy, xx = np.mgrid[0:120, 0:90]
    arr = np.stack([(xx * 2) % 256, (yy * 3) % 256, (xx + yy) % 256], -1).astype(np.uint8)
    Image.fromarray(arr).save(path, quality=95)
    return path


def manifest_as_v1(data: dict) -> dict:
    """A schema-2 manifest dict rewritten into the shape the previous release wrote
    (``schema_version: 1``): a sliced scheme's parameters in ``vision.slicing`` and
    ``vision.preprocess`` an ImagePreprocess naming the scheme; ``slicing: {}`` for clip."""
    data = json.loads(json.dumps(data))
    vision = data.get("vision")
    if vision is not None:
        pp = vision["preprocess"]
        if pp["scheme"] == "clip":
            vision["slicing"] = {}
        else:
            side = vision["input"]["shape"][-1]
            vision["slicing"] = dict(pp)
            vision["preprocess"] = {
                "scheme": pp["scheme"],
                "image_size": side,
                "shortest_edge": side,
                "crop_height": side,
                "crop_width": side,
                "do_resize": True,
                "do_center_crop": pp["scheme"] == "anyres",
                "do_rescale": True,
                "do_normalize": True,
                "resample": pp["resample"],
                "rescale_factor": 1 / 255,
                "mean": pp["mean"],
                "std": pp["std"],
            }
    data["schema_version"] = 1
    return data
