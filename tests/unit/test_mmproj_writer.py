"""The shared mmproj GGUF writer (edge.export.mmproj) on a hand-made plan: keys, names, storage types."""

from __future__ import annotations

import numpy as np
import pytest

from edge.export.mmproj import NoProjector, ProjectorPlan, storage_type, vision_keys, write_mmproj


def _keys(**over):
    args = dict(
        projector_type="gemma3",
        projection_dim=64,
        image_size=32,
        patch_size=4,
        embedding_length=32,
        feed_forward_length=64,
        block_count=1,
        head_count=4,
        layer_norm_eps=1e-6,
        mean=[0.5] * 3,
        std=[0.5] * 3,
        act="gelu",
    )
    return vision_keys(**(args | over))


def test_storage_follows_the_converter_rules():
    assert storage_type("v.blk.0.attn_q.weight", 2, "f16", {}) == "f16"
    assert storage_type("v.blk.0.attn_q.weight", 2, "f32", {}) == "f32"
    assert storage_type("v.blk.0.attn_q.bias", 1, "f16", {}) == "f32"  # 1-D
    assert storage_type("mm.soft_emb_norm.weight", 2, "f16", {}) == "f32"  # a norm
    assert storage_type("v.position_embd.weight", 2, "f16", {}) == "f32"  # positions
    assert storage_type("v.class_embd", 2, "f16", {}) == "f32"  # not a .weight
    assert storage_type("v.patch_embd.weight", 4, "f16", {"patch_embd": "f32"}) == "f32"  # forced
    assert storage_type("v.patch_embd.weight.1", 4, "f16", {"patch_embd": "f16"}) == "f16"
    assert storage_type("v.patch_embd.weight.1", 4, "f32", {"patch_embd": "f16"}) == "f32"  # never above the file


def test_written_file_reads_back(tmp_path):
    import gguf

    rng = np.random.default_rng(0)
    plan = ProjectorPlan(
        "gemma3",
        _keys() | {"clip.vision.feature_layer": [1, 2]},
        [
            ("v.blk.0.attn_q.weight", rng.random((32, 16), dtype=np.float32)),
            ("v.post_ln.bias", np.ones(32, np.float32)),
        ],
    )
    counts = write_mmproj(tmp_path / "m.gguf", plan, "f16", "tiny")
    assert counts == {"f16": 1, "f32": 1}
    r = gguf.GGUFReader(str(tmp_path / "m.gguf"))
    fields = {k: v.contents() for k, v in r.fields.items()}
    assert fields["general.architecture"] == "clip" and fields["general.type"] == "mmproj"
    assert fields["clip.projector_type"] == "gemma3" and fields["clip.use_gelu"] is True
    assert fields["clip.vision.feature_layer"] == [1, 2]
    assert fields["clip.vision.image_mean"] == pytest.approx([0.5] * 3)
    shapes = {t.name: (tuple(int(x) for x in t.shape), t.tensor_type.name) for t in r.tensors}
    assert shapes == {"v.blk.0.attn_q.weight": ((16, 32), "F16"), "v.post_ln.bias": ((32,), "F32")}  # ggml order


def test_unknown_activation_and_duplicates_are_refused(tmp_path):
    from edge.errors import ExportError

    with pytest.raises(NoProjector):
        _keys(act="relu")
    t = np.zeros((2, 2), np.float32)
    with pytest.raises(ExportError):
        write_mmproj(
            tmp_path / "d.gguf", ProjectorPlan("gemma3", _keys(), [("a.weight", t), ("a.weight", t)]), "f32", "x"
        )
