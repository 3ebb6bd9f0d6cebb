"""Whisper's KV-cached decoder -> dynamic int8 with an int8 logits projection.

Whisper ties its logits projection to the token embedding: the exported decoder reads one
``[V, D]`` table in a ``Gather`` (the embedding) and in a ``Gemm(transB=1)`` (the logits,
``edge.export.speech.whisper_onnx.untie_transposed_copies``). Plain dynamic int8 leaves that
table float (``onnx_quant._protect_shared_gemm``), so each decoded token still reads the
whole f32 table: 80 MB for tiny.en, about half of a decoder step on a 2-core CPU
(docs/speech.md, "Benchmark"). Here the logits get their own copy of the table, transposed
to a constant MatMul weight ``[D, V]`` and quantized with one scale per vocabulary row
(per-tensor scales changed tiny.en's transcripts; per-row ones left them as they were), and
the ``Gather`` reads the table stored as f16 (a lookup of 1-2 rows a step; the values are
those of the f16 export, and tiny.en's transcripts did not change either). CTranslate2's
int8 Whisper (what faster-whisper runs) also quantizes this projection.

For tiny.en the decoder file goes from 89 MB (q8 before) to 69 MB: 40 MB f16 table, 20 MB
int8 projection, the layers as before.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import onnx
from onnx import helper, numpy_helper

from edge.quantize import onnx_quant

_LOGITS_NODE = "edge_logits_matmul"


def int8_decoder(model: onnx.ModelProto, dst: Path, logits: str) -> None:
    """Dynamic int8 of a Whisper decoder graph into ``dst``; ``logits`` names its logits output.

    Layer MatMuls are quantized as :func:`edge.quantize.onnx_quant.int8_dynamic` does (one
    scale per tensor); the logits projection per row (see the module docstring). A graph
    whose logits do not come from a tied ``Gemm`` is quantized as any other graph.
    """
    table = untie_logits(model, logits)
    onnx_quant.int8_dynamic(model, dst, per_channel_nodes=(_LOGITS_NODE,) if table else ())
    if table:
        store_table_f16(dst, table)


def untie_logits(model: onnx.ModelProto, logits: str) -> Optional[str]:
    """Point the node that makes ``logits`` at its own transposed copy of a tied table.

    The ``Gemm(x, W, transB=1)`` becomes ``MatMul(x, W^T)`` (node :data:`_LOGITS_NODE`) over
    a new initializer; ``W`` stays for its other readers. Returns ``W``'s name, or None when
    the logits are not a plain tied ``Gemm`` (nothing is changed then).
    """
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    node = next((n for n in graph.node if logits in n.output), None)
    if node is None or node.op_type != "Gemm" or len(node.input) != 2 or node.input[1] not in inits:
        return None
    attrs = {a.name: a for a in node.attribute}
    if not ("transB" in attrs and attrs["transB"].i) or ("transA" in attrs and attrs["transA"].i):
        return None
    if any(name in attrs and attrs[name].f != 1.0 for name in ("alpha", "beta")):
        return None
    table = node.input[1]
    if not any(table in n.input for n in graph.node if n is not node):
        return None  # not shared: the quantizer handles a lone Gemm weight itself
    weight = numpy_helper.to_array(inits[table])
    copy = numpy_helper.from_array(np.ascontiguousarray(weight.T), name=f"{table}.logits_t")
    graph.initializer.append(copy)
    node.CopyFrom(helper.make_node("MatMul", [node.input[0], copy.name], list(node.output), name=_LOGITS_NODE))
    return table


def store_table_f16(path: Path, table: str) -> None:
    """Store the f32 initializer ``table`` of the graph at ``path`` as f16 + ``Cast`` to f32.

    Only the embedding ``Gather`` reads it once the logits have their own copy, so the cast
    runs on the gathered rows (1-2 a step), not on the table. Nothing is changed unless every
    reader of ``table`` is such a ``Gather``.
    """
    model = onnx.load(str(path))
    graph = model.graph
    init = next((i for i in graph.initializer if i.name == table), None)
    if init is None or init.data_type != onnx.TensorProto.FLOAT:
        return
    readers = [n for n in graph.node if table in n.input]
    if not readers or any(n.op_type != "Gather" or n.input[0] != table for n in readers):
        return
    half = numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float16), name=f"{table}_f16")
    graph.initializer.remove(init)
    graph.initializer.append(half)
    nodes = []
    for n in graph.node:
        if n in readers:
            rows = f"{n.output[0]}_f16"
            nodes.append(helper.make_node("Gather", [half.name, n.input[1]], [rows], name=n.name, axis=_axis(n)))
            cast = helper.make_node("Cast", [rows], list(n.output), name=f"{n.name}_cast", to=onnx.TensorProto.FLOAT)
            nodes.append(cast)
        else:
            nodes.append(n)
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.save(model, str(path))


def _axis(node: onnx.NodeProto) -> int:
    return next((a.i for a in node.attribute if a.name == "axis"), 0)
