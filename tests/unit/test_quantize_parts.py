"""Quantization parts without models: recipes, figures, ONNX graph rewriting, probe images,
and a fixed-batch vision graph. The graphs are small real ONNX models run by onnxruntime."""

from __future__ import annotations

import math

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edge.errors import InputError
from edge.manifest import ImagePreprocess, TensorSpec, VisionSpec
from edge.options import OnnxOptions
from edge.quantize import fidelity, onnx_quant
from edge.quantize.probes import probe_images
from edge.quantize.recipes import RECIPES, Recipe, get_recipe
from edge.runtime.vision.encoder import VisionEncoder


def test_recipes_by_name():
    assert {"q8", "q4", "q4-int4vision", "npu-int8"} <= set(RECIPES)
    assert get_recipe("q8").llm == "Q8_0" and get_recipe("q8").vision == "int8"
    assert get_recipe("q4").llm == "Q4_K_M"
    assert get_recipe("q4-int4vision").vision == "int4" and get_recipe("q4-int4vision").int4_block == 32
    assert get_recipe("npu-int8").vision == "qdq-int8"


def test_unknown_recipe_lists_the_known_ones():
    with pytest.raises(InputError, match="unknown recipe 'q3'.*q8, q4, q4-int4vision, npu-int8"):
        get_recipe("q3")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"llm": "Q7_X", "vision": None}, "unknown GGUF type"),
        ({"llm": None, "vision": "int3"}, "unknown vision method"),
        ({"llm": None, "vision": "int4", "int4_block": 24}, "power of two"),
        ({"llm": None, "vision": None, "audio": "qdq-int8"}, "cannot be statically"),
    ],
)
def test_bad_recipes_are_refused(kwargs, match):
    with pytest.raises(InputError, match=match):
        Recipe("x", "test", **kwargs)


def test_embedding_figures_are_computed():
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((3, 5, 8)).astype(np.float32)
    same = fidelity.embedding_figures(ref, ref.copy())
    assert same["cosine_min"] == pytest.approx(1.0) and same["max_abs_diff"] == 0.0 and same["images"] == 3
    noisy = ref + rng.standard_normal(ref.shape).astype(np.float32) * 0.1
    worse = fidelity.embedding_figures(ref, noisy)
    assert worse["cosine_min"] < worse["cosine_mean"] < 1.0
    assert worse["max_abs_diff"] == pytest.approx(np.abs(noisy - ref).max())
    noisier = fidelity.embedding_figures(ref, ref + (noisy - ref) * 3)
    assert noisier["cosine_mean"] < worse["cosine_mean"]
    assert noisier["max_abs_diff"] > worse["max_abs_diff"]


def test_llm_and_answer_figures():
    ref = fidelity.Observation(heldout_nll=2.0, answers=[[1, 2, 3], [4, 5], [6]])
    ours = fidelity.Observation(
        positions=10,
        top1_agree=9,
        kl_sum=0.5,
        kl_max=0.2,
        heldout_nll=2.01,
        heldout_tokens=99,
        answers=[[1, 2, 3], [4, 6], [7, 8]],
    )
    llm = fidelity.llm_figures(ref, ours)
    assert llm["top1_agreement"] == 0.9 and llm["kl"] == 0.05 and llm["kl_max"] == 0.2
    assert llm["perplexity_before"] == pytest.approx(math.exp(2.0))
    assert llm["perplexity_change"] == pytest.approx(math.exp(0.01) - 1)
    ans = fidelity.answer_figures(ref, ours, 24)
    assert ans["identical_answers"] == pytest.approx(1 / 3)
    assert ans["mean_matched_prefix"] == pytest.approx((3 + 1 + 0) / 3)


def test_probe_images_are_fixed_and_varied():
    a, b = probe_images(8), probe_images(8)
    assert [np.asarray(x).tobytes() for x in a] == [np.asarray(x).tobytes() for x in b]
    assert len({x.size for x in a}) >= 5
    assert all(x.mode == "RGB" for x in a)
    assert np.asarray(probe_images(3, seed=1)[0]).tobytes() != np.asarray(a[0]).tobytes()


def _linear_graph(weight: np.ndarray, f16: bool, batch="n") -> onnx.ModelProto:
    """x [batch, 4, k] @ W [k, m], W stored as f32 or as f16 + Cast (the f16 export's form)."""
    k, m = weight.shape
    nodes, inits = [], []
    if f16:
        inits.append(numpy_helper.from_array(weight.astype(np.float16), "W_f16"))
        nodes.append(helper.make_node("Cast", ["W_f16"], ["W"], to=TensorProto.FLOAT))
    else:
        inits.append(numpy_helper.from_array(weight.astype(np.float32), "W"))
    nodes.append(helper.make_node("MatMul", ["x", "W"], ["y"]))
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 4, k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 4, m])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_f16_weights_are_folded_back_and_quantized(tmp_path):
    w = np.random.default_rng(1).standard_normal((64, 32)).astype(np.float32)
    src = tmp_path / "f16.onnx"
    onnx.save(_linear_graph(w, f16=True), src)
    model = onnx_quant.load_f32(src)
    assert [n.op_type for n in model.graph.node] == ["MatMul"]
    (init,) = model.graph.initializer
    assert init.name == "W" and init.data_type == TensorProto.FLOAT
    np.testing.assert_array_equal(numpy_helper.to_array(init), w.astype(np.float16).astype(np.float32))
    onnx_quant.int8_dynamic(model, tmp_path / "int8.onnx")
    ops = [n.op_type for n in onnx.load(str(tmp_path / "int8.onnx")).graph.node]
    assert "MatMulInteger" in ops and "MatMul" not in ops
    onnx_quant.int4_weights(onnx_quant.load_f32(src), tmp_path / "int4.onnx", block=32)
    assert "MatMulNBits" in [n.op_type for n in onnx.load(str(tmp_path / "int4.onnx")).graph.node]


def test_static_quantization_needs_fixed_shapes_and_no_data_dependent_ops(tmp_path):
    model = _linear_graph(np.ones((8, 8), np.float32), f16=False)
    with pytest.raises(InputError, match="variable shape"):
        onnx_quant.check_static(model, "x", [1, -1, 8], "g.onnx")
    with pytest.raises(InputError, match="has no input"):
        onnx_quant.check_static(model, "pixels", [1, 4, 8], "g.onnx")
    model.graph.node.append(helper.make_node("NonZero", ["y"], ["nz"]))
    with pytest.raises(InputError, match="NonZero"):
        onnx_quant.check_static(model, "x", [1, 4, 8], "g.onnx")


def test_qdq_static_fixes_the_batch_and_calls_back_per_calibration_input(tmp_path):
    rng = np.random.default_rng(2)
    model = _linear_graph(rng.standard_normal((8, 6)).astype(np.float32), f16=False)
    seen = []
    batches = [rng.standard_normal((1, 4, 8)).astype(np.float32) for _ in range(5)]
    onnx_quant.qdq_static(model, tmp_path / "qdq.onnx", "x", [-1, 4, 8], batches, on_batch=lambda: seen.append(1))
    assert len(seen) == 5
    out = onnx.load(str(tmp_path / "qdq.onnx"))
    assert [d.dim_value for d in out.graph.input[0].type.tensor_type.shape.dim] == [1, 4, 8]
    assert {"QuantizeLinear", "DequantizeLinear"} <= {n.op_type for n in out.graph.node}


def test_vision_encoder_runs_a_fixed_batch_graph_one_image_at_a_time(tmp_path):
    """A [1, 3, 2, 2] -> [1, 3, 4] graph (as static QDQ makes) still takes any number of images."""
    w = np.random.default_rng(3).standard_normal((4, 4)).astype(np.float32)
    nodes = [
        helper.make_node("Reshape", ["pixel_values", "shape"], ["flat"]),
        helper.make_node("MatMul", ["flat", "W"], ["image_embeds"]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, [1, 3, 2, 2])],
        [helper.make_tensor_value_info("image_embeds", TensorProto.FLOAT, [1, 3, 4])],
        [numpy_helper.from_array(w, "W"), numpy_helper.from_array(np.array([1, 3, 4], np.int64), "shape")],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), tmp_path / "v.onnx")
    pp = ImagePreprocess(scheme="clip", image_size=2, shortest_edge=2, crop_height=2, crop_width=2)
    spec = VisionSpec(
        file="v.onnx",
        dtype="qdq-int8",
        input=TensorSpec("pixel_values", "float32", [1, 3, 2, 2]),
        output=TensorSpec("image_embeds", "float32", [1, 3, 4]),
        tokens_per_image=3,
        embed_dim=4,
        preprocess=pp,
    )
    enc = VisionEncoder(tmp_path, spec, OnnxOptions(threads=1))
    x = np.random.default_rng(4).standard_normal((3, 3, 2, 2)).astype(np.float32)
    out = enc(x)
    assert out.shape == (3, 3, 4)
    np.testing.assert_allclose(out, x.reshape(3, 3, 4) @ w, rtol=1e-5, atol=1e-5)
    assert enc(x[:0]).shape == (0, 3, 4)
