"""Every bundle the exporters write validates against the shipped JSON Schema of manifest.json,
and schema-1 copies of them (the previous release's shape) still load and run the same."""

from __future__ import annotations

import json
import shutil

import jsonschema
import pytest
from conftest import manifest_as_v1, run_cli

from edge.bundle import load_manifest
from edge.export.registry import families, speech_families
from edge.schema import shipped_schema_path

# The session fixture (tests/conftest.py) holding a tiny exported bundle of each family.
BUNDLE_FIXTURES = {
    "llama": "tiny_llama_bundle",
    "llava": "tiny_llava_bundle",
    "llava_next": "tiny_llava_next_bundle",
    "idefics3": "tiny_idefics3_bundle",
    "smolvlm": "tiny_smolvlm_bundle",
    "qwen2_5_vl": "tiny_qwen2_5_vl_bundle",
    "whisper": "tiny_whisper_bundle",
    "gemma3": "tiny_gemma3_bundle",
    "gemma3_text": "tiny_gemma3_text_bundle",
}
REGISTERED = sorted(set(families()) | set(speech_families()))


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(shipped_schema_path().read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def _errors(validator, data: dict) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"[:300] for e in validator.iter_errors(data)]


@pytest.mark.parametrize("family", REGISTERED)
def test_every_exported_bundle_validates(request, validator, family):
    fixture = BUNDLE_FIXTURES.get(family)
    assert fixture is not None, f"family {family} has no tiny bundle fixture: add one to tests/conftest.py and here"
    bundle = request.getfixturevalue(fixture)
    data = json.loads((bundle / "manifest.json").read_text(encoding="utf-8"))
    assert data["family"] == family
    assert not _errors(validator, data)


@pytest.mark.parametrize("family", ["llava", "idefics3", "llava_next"])
def test_schema_1_copies_load_as_the_same_manifest(request, tmp_path, validator, family):
    bundle = request.getfixturevalue(BUNDLE_FIXTURES[family])
    copy = tmp_path / "v1"
    shutil.copytree(bundle, copy)
    data = json.loads((copy / "manifest.json").read_text(encoding="utf-8"))
    v1 = manifest_as_v1(data)
    (copy / "manifest.json").write_text(json.dumps(v1, indent=2), encoding="utf-8")
    assert _errors(validator, v1)  # the v2 schema does not describe v1 manifests...
    _, upgraded = load_manifest(copy, verify=True)  # ...but edge still reads them
    _, current = load_manifest(bundle)
    assert upgraded == current
    proc = run_cli("inspect", str(copy))
    assert proc.returncode == 0, proc.stderr
    assert f"schema={upgraded.schema_version}" in proc.stdout


def test_a_schema_1_copy_runs_like_the_bundle(tiny_idefics3_bundle, tmp_path, photo2):
    import edge
    from edge.options import GenerateOptions

    copy = tmp_path / "v1"
    shutil.copytree(tiny_idefics3_bundle, copy)
    data = json.loads((copy / "manifest.json").read_text(encoding="utf-8"))
    (copy / "manifest.json").write_text(json.dumps(manifest_as_v1(data)), encoding="utf-8")
    tokens = []
    for root in (tiny_idefics3_bundle, copy):
        pipe = edge.load(root, threads=2)
        try:
            tokens.append(pipe.generate("Describe the picture.", [photo2], GenerateOptions(max_tokens=6)).tokens)
        finally:
            pipe.close()
    assert tokens[0] == tokens[1]


def test_cli_prints_the_shipped_schema():
    proc = run_cli("inspect", "--schema")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == json.loads(shipped_schema_path().read_text(encoding="utf-8"))
    # `edge inspect` without BUNDLE (and without --schema) inspects the default model since
    # issue 16: tests/test_first_minutes.py::test_inspect_and_bench_without_bundle_use_the_default_model
