"""Whisper decoder int8: the tied logits projection gets its own per-row int8 copy (speech_int8)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edge.options import OnnxOptions
from edge.quantize import speech_int8
from edge.runtime.onnx_backend import open_session


def _tied_decoder(table: np.ndarray, w: np.ndarray) -> onnx.ModelProto:
    """ids -> Gather(table) -> MatMul(w) -> Gemm(table, transB=1) -> logits: Whisper's tied shape."""
    nodes = [
        helper.make_node("Gather", ["table", "ids"], ["emb"], axis=0),
        helper.make_node("MatMul", ["emb", "w"], ["h"]),
        helper.make_node("Gemm", ["h", "table"], ["logits"], transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, [1])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, table.shape[0]])],
        [numpy_helper.from_array(table, "table"), numpy_helper.from_array(w, "w")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _run(path, ids: int) -> np.ndarray:
    return open_session(path, OnnxOptions(threads=1)).run(None, {"ids": np.array([ids], np.int64)})[0]


def test_tied_logits_get_a_per_row_int8_copy_and_the_gather_an_f16_table(tmp_path):
    rng = np.random.default_rng(0)
    # rows of very different ranges: one scale for the whole table would flatten the small ones
    table = (rng.standard_normal((512, 64)) * rng.uniform(0.05, 1.0, (512, 1))).astype(np.float32)
    w = rng.standard_normal((64, 64)).astype(np.float32) / 8
    onnx.save(_tied_decoder(table, w), tmp_path / "f32.onnx")
    speech_int8.int8_decoder(_tied_decoder(table, w), tmp_path / "int8.onnx", "logits")
    graph = onnx.load(str(tmp_path / "int8.onnx")).graph
    ops = [n.op_type for n in graph.node]
    assert "Gemm" not in ops and ops.count("MatMulInteger") == 2
    inits = {i.name: i for i in graph.initializer}
    assert "table" not in inits  # no f32 table left
    (gather,) = [n for n in graph.node if n.op_type == "Gather"]
    assert inits[gather.input[0]].data_type == TensorProto.FLOAT16
    logits = next(n for n in graph.node if n.op_type == "MatMulInteger" and list(inits[n.input[1]].dims) == [64, 512])
    assert list(inits[logits.input[3]].dims) == [512]  # one zero point (and scale) per vocabulary row
    for ids in (0, 7, 511):
        ref, got = _run(tmp_path / "f32.onnx", ids), _run(tmp_path / "int8.onnx", ids)
        assert np.argmax(got) == np.argmax(ref)
        assert np.abs(got - ref).max() < 0.05 * np.abs(ref).max()


def test_a_graph_without_a_tied_gemm_is_quantized_as_any_other(tmp_path):
    rng = np.random.default_rng(1)
    table = rng.standard_normal((32, 16)).astype(np.float32)
    model = _tied_decoder(table, rng.standard_normal((16, 16)).astype(np.float32))
    model.graph.node[2].CopyFrom(helper.make_node("MatMul", ["h", "table_t"], ["logits"]))
    model.graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(table.T), "table_t"))
    assert speech_int8.untie_logits(model, "logits") is None
    speech_int8.int8_decoder(model, tmp_path / "int8.onnx", "logits")
    graph = onnx.load(str(tmp_path / "int8.onnx")).graph
    inits = {i.name: i for i in graph.initializer}
    assert [n.op_type for n in graph.node].count("MatMulInteger") == 2
    assert inits["table"].data_type == TensorProto.FLOAT  # the Gather's table is left as it was
