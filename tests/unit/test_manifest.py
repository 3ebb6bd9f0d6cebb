"""The bundle contract: manifest round trip, verification, atomic writes."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from conftest import manifest_as_v1

from edge.bundle import load_manifest, write_bundle
from edge.errors import BundleError
from edge.manifest import SCHEMA_VERSION, ImagePreprocess, LLMSpec, Manifest, PromptLayout, TensorSpec, VisionSpec
from edge.preprocess import AnyresSlicing, Idefics3Slicing


def _manifest() -> Manifest:
    pp = ImagePreprocess(
        scheme="clip",
        image_size=336,
        shortest_edge=336,
        crop_height=336,
        crop_width=336,
        mean=[0.5, 0.5, 0.5],
        std=[0.25, 0.25, 0.25],
    )
    return Manifest(
        name="demo",
        family="llava",
        llm=LLMSpec(
            file="llm.gguf",
            arch="llama",
            dtype="f16",
            n_ctx_train=4096,
            n_embd=64,
            n_vocab=100,
            bos_id=1,
            eos_ids=[2],
            add_bos=True,
            chat_template="{{ x }}",
            bos_token="<s>",
            eos_token="</s>",
        ),
        files={},
        prompt=PromptLayout(image_marker="<image>", content_format="parts"),
        vision=VisionSpec(
            file="vision.onnx",
            dtype="f32",
            input=TensorSpec("pixel_values", "float32", [-1, 3, 336, 336]),
            output=TensorSpec("image_embeds", "float32", [-1, 576, 64]),
            tokens_per_image=576,
            embed_dim=64,
            preprocess=pp,
        ),
        provenance={"source": "x", "parity": {"vision_max_abs_diff": 1e-6}},
    )


def _populate(tmp: Path) -> Manifest:
    (tmp / "llm.gguf").write_bytes(b"G" * 100)
    (tmp / "vision.onnx").write_bytes(b"O" * 50)
    return _manifest()


def test_round_trip():
    m = dataclasses.replace(_manifest(), files={})
    again = Manifest.from_json(m.to_json())
    assert again == m
    assert json.loads(m.to_json())["schema_version"] == SCHEMA_VERSION


def test_write_then_load_and_verify(tmp_path):
    written = write_bundle(tmp_path / "b", _populate)
    assert set(written.files) == {"llm.gguf", "vision.onnx"}
    root, loaded = load_manifest(tmp_path / "b", verify=True)
    assert loaded == written
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp dirs left


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda m: m.update(schema_version=SCHEMA_VERSION + 1), "schema_version"),
        (lambda m: m.update(schema_version="2"), "schema_version"),
        (
            lambda m: m["vision"]["preprocess"].update(scheme="tiles"),
            r"manifest.vision.preprocess.scheme must be one of "
            r"\['clip', 'idefics3', 'anyres', 'uhd', 'qwen2vl', 'gemma3'\], got 'tiles'",
        ),
        (lambda m: m["vision"]["preprocess"].pop("scheme"), "manifest.vision.preprocess.scheme is missing"),
        (lambda m: m["vision"].update(preprocess=[]), "manifest.vision.preprocess must be an object"),
        (lambda m: m["vision"]["preprocess"].update(crop_width="336"), "preprocess.crop_width must be int"),
        (lambda m: m["vision"]["preprocess"].update(mean=[0.5, "x", 0.5]), r"preprocess.mean\[1\] must be float"),
        (
            lambda m: m["vision"].update(preprocess={"scheme": "idefics3", "tile_size": 0}),
            r"^manifest.json: manifest.vision.preprocess.tile_size must be an integer >= 1, got 0$",
        ),
        (
            lambda m: m["vision"].update(preprocess={"scheme": "anyres", "grid_pinpoints": [[336, 600]]}),
            r"^manifest.json: manifest.vision.preprocess: grid pinpoint \[336, 600\] is not a multiple of crop_size 336$",
        ),
        (
            lambda m: m["vision"].update(preprocess={"scheme": "uhd", "resample": "cubic"}),
            "manifest.vision.preprocess.resample must be one of nearest, bilinear",
        ),
        (
            lambda m: m["vision"].update(preprocess={"scheme": "idefics3", "do_pad": "yes"}),
            "manifest.vision.preprocess.do_pad must be bool",
        ),
        (lambda m: m.pop("files"), "manifest.files is missing"),
        (lambda m: m["llm"].update(n_embd="64"), "manifest.llm.n_embd must be int"),
        (lambda m: m["vision"].update(tokens_per_image=True), "tokens_per_image must be int"),
        (lambda m: m["llm"].update(eos_ids=2), "eos_ids must be a list"),
        (lambda m: m["files"].pop("llm.gguf"), "does not list llm.gguf"),
    ],
)
def test_verification_names_what_is_wrong(tmp_path, edit, message):
    write_bundle(tmp_path / "b", _populate)
    path = tmp_path / "b" / "manifest.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    with pytest.raises(BundleError, match=message):
        load_manifest(tmp_path / "b")


def test_size_and_hash_checks(tmp_path):
    write_bundle(tmp_path / "b", _populate)
    (tmp_path / "b" / "vision.onnx").write_bytes(b"X" * 50)  # same size, other content
    load_manifest(tmp_path / "b")  # sizes match
    with pytest.raises(BundleError, match="sha256"):
        load_manifest(tmp_path / "b", verify=True)
    (tmp_path / "b" / "llm.gguf").write_bytes(b"G" * 10)
    with pytest.raises(BundleError, match="llm.gguf is 10 bytes"):
        load_manifest(tmp_path / "b")
    (tmp_path / "b" / "llm.gguf").unlink()
    with pytest.raises(BundleError, match="missing"):
        load_manifest(tmp_path / "b")


def test_failed_write_leaves_nothing_and_keeps_the_old_bundle(tmp_path):
    write_bundle(tmp_path / "b", _populate)
    before = (tmp_path / "b" / "manifest.json").read_text()

    def broken(tmp: Path) -> Manifest:
        (tmp / "llm.gguf").write_bytes(b"half")
        raise KeyboardInterrupt  # an interrupt in the middle of an export

    with pytest.raises(KeyboardInterrupt):
        write_bundle(tmp_path / "b", broken, overwrite=True)
    assert (tmp_path / "b" / "manifest.json").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]


def test_existing_output_needs_overwrite(tmp_path):
    write_bundle(tmp_path / "b", _populate)
    with pytest.raises(BundleError, match="exists"):
        write_bundle(tmp_path / "b", _populate)
    write_bundle(tmp_path / "b", _populate, overwrite=True)
    (tmp_path / "plain").mkdir()
    with pytest.raises(BundleError, match="not a bundle"):
        write_bundle(tmp_path / "plain", _populate, overwrite=True)


@pytest.mark.parametrize(
    "slicing",
    [None, Idefics3Slicing(tile_size=336, tokens_per_tile=576), AnyresSlicing()],
    ids=["clip", "idefics3", "anyres"],
)
def test_schema_1_manifests_load_upgraded_in_memory(tmp_path, slicing):
    def populate(tmp: Path) -> Manifest:
        m = _populate(tmp)
        if slicing is None:
            return m
        return dataclasses.replace(m, vision=dataclasses.replace(m.vision, preprocess=slicing))

    written = write_bundle(tmp_path / "b", populate)
    path = tmp_path / "b" / "manifest.json"
    path.write_text(json.dumps(manifest_as_v1(json.loads(path.read_text()))))
    _, loaded = load_manifest(tmp_path / "b", verify=True)
    assert loaded == written and loaded.schema_version == SCHEMA_VERSION


def test_schema_1_sliced_bundle_without_its_slicing_is_refused(tmp_path):
    write_bundle(tmp_path / "b", _populate)
    path = tmp_path / "b" / "manifest.json"
    data = manifest_as_v1(json.loads(path.read_text()))
    data["vision"]["preprocess"]["scheme"] = "idefics3"
    path.write_text(json.dumps(data))
    with pytest.raises(BundleError, match="schema_version 1.*vision.slicing is missing.*re-export"):
        load_manifest(tmp_path / "b")
