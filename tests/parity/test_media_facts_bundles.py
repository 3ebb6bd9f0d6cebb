"""A bundle records how its LLM sees media rows; the runtime refuses at load what it cannot execute."""

from __future__ import annotations

import json
import shutil

import pytest
from conftest import run_cli

from edge.errors import BundleError
from edge.options import RuntimeOptions
from edge.runtime.pipeline import Pipeline


def _edited(bundle, tmp_path, **facts):
    dst = tmp_path / f"{bundle.name}-edited"
    shutil.copytree(bundle, dst)
    m = json.loads((dst / "manifest.json").read_text())
    m["llm"].update(facts)
    (dst / "manifest.json").write_text(json.dumps(m))
    return dst


def test_exports_record_the_llama_facts(tiny_llava_bundle, tiny_llama_bundle):
    for bundle in (tiny_llava_bundle, tiny_llama_bundle):
        llm = json.loads((bundle / "manifest.json").read_text())["llm"]
        assert (llm["arch"], llm["media_attention"], llm["media_positions"]) == ("llama", "causal", "linear")


@pytest.mark.parametrize(
    "facts, words",
    [
        # ({"media_attention": "bidirectional"}) runs now: tests/parity/test_gemma3.py
        ({"media_positions": "mrope"}, "'mrope' (multi-axis) positions"),
    ],
)
def test_a_vlm_bundle_this_runtime_cannot_execute_is_refused(tiny_llava_bundle, tmp_path, photo, facts, words):
    bundle = _edited(tiny_llava_bundle, tmp_path, **facts)
    with pytest.raises(BundleError) as info:
        Pipeline(bundle, RuntimeOptions.simple(threads=1))
    assert words in str(info.value) and "\n" not in str(info.value)
    proc = run_cli(
        "run",
        str(bundle),
        "--image",
        str(photo),
        "--prompt",
        "USER: <image>\nHi ASSISTANT:",
        "--no-template",
        "--max-tokens",
        "2",
        "--threads",
        "1",
    )
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert lines[-1].startswith("error: ") and words in lines[-1]


def test_a_text_only_bundle_has_no_media_rows_to_refuse(tiny_llama_bundle, tmp_path):
    bundle = _edited(tiny_llama_bundle, tmp_path, media_attention="bidirectional", media_positions="mrope")
    pipe = Pipeline(bundle, RuntimeOptions.simple(threads=1))
    try:
        assert pipe.manifest.llm.media_positions == "mrope"
    finally:
        pipe.close()
