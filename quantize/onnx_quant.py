"""ONNX graphs -> int8 / int4 / static QDQ int8, with onnxruntime's own quantization tools.

This is the one module that imports ``onnxruntime.quantization`` (and the shape helpers of
``onnxruntime.tools``). Inference sessions still come from
:func:`edge.runtime.onnx_backend.open_session`; the only sessions made elsewhere are the ones
onnxruntime's calibrator makes internally to collect activation ranges.

Every method starts from f32 weights: an ``--dtype f16`` export stores weights as f16
initializers followed by a ``Cast`` to f32 (``edge.export.vision_onnx.store_weights_f16``),
which would hide the weights from the quantizers (a MatMul whose B is a Cast output is not
"constant"), so those casts are folded back into f32 initializers first.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional, Sequence

import numpy as np
import onnx
from onnx import numpy_helper

from edge.errors import ExportError, InputError

# Ops whose output shapes depend on the data (or that hold subgraphs): a graph with them
# cannot get the fixed shapes a static QDQ graph for an NPU needs.
_NOT_STATIC = {"If", "Loop", "Scan", "NonZero", "Unique", "NonMaxSuppression", "Compress"}


def load_f32(path: Path) -> onnx.ModelProto:
    """Load ``path`` with f16-stored weights (f16 initializer -> Cast to f32) folded back to f32."""
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # onnx raises DecodeError and friends
        raise ExportError(f"cannot read {Path(path).name}: {exc}") from None
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    uses: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            uses[name] = uses.get(name, 0) + 1
    keep, folded = [], []
    for node in graph.node:
        to = next((a.i for a in node.attribute if a.name == "to"), None)
        src = inits.get(node.input[0]) if node.op_type == "Cast" and node.input else None
        if src is not None and src.data_type == onnx.TensorProto.FLOAT16 and to == onnx.TensorProto.FLOAT:
            folded.append(numpy_helper.from_array(numpy_helper.to_array(src).astype(np.float32), name=node.output[0]))
            uses[src.name] -= 1
        else:
            keep.append(node)
    if not folded:
        return model
    remaining = [i for i in graph.initializer if uses.get(i.name, 0) > 0 or i.data_type != onnx.TensorProto.FLOAT16]
    del graph.node[:]
    graph.node.extend(keep)
    del graph.initializer[:]
    graph.initializer.extend(remaining + folded)
    return model


def int8_dynamic(model: onnx.ModelProto, dst: Path, per_channel_nodes: Sequence[str] = ()) -> None:
    """Dynamic int8: MatMuls with constant weights become int8 weights + on-the-fly activations.

    Only MatMul is quantized: on a full-size SigLIP tower also quantizing the patch Conv
    (ConvInteger) was slower on CPU for no gain in size that matters (`python -m edge.benchmarks.quant_vision`).
    Weights get one scale per tensor, except the MatMuls named in ``per_channel_nodes``: one
    scale per output column, in a first pass (Whisper's logits projection: with one scale for
    all 51864 vocabulary rows tiny.en's transcripts changed, with one per row they did not;
    ``edge.quantize.speech_int8``).
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    _protect_shared_gemm(model)
    with _quiet(), _failure(dst, "int8"):
        if per_channel_nodes:
            quantize_dynamic(
                model,
                str(dst),
                weight_type=QuantType.QInt8,
                per_channel=True,
                op_types_to_quantize=["MatMul"],
                nodes_to_quantize=list(per_channel_nodes),
                extra_options={"MatMulConstBOnly": True},
            )
            model = onnx.load(str(dst))
        quantize_dynamic(
            model,
            str(dst),
            weight_type=QuantType.QInt8,
            op_types_to_quantize=["MatMul"],
            extra_options={"MatMulConstBOnly": True},
        )
        _restore_shared_gemm(dst)


_SHARED = "edge_shared_transpose_"


def _protect_shared_gemm(model: onnx.ModelProto) -> None:
    """Hide ``Gemm(transB=1)`` weights that other nodes also read from the dynamic quantizer.

    It turns every such Gemm into a MatMul by transposing the weight initializer *in
    place*, which breaks the weight's other readers: Whisper's decoder reads the token
    embedding both in a Gather and, transposed, in the logits Gemm
    (``edge.export.speech.whisper_onnx.untie_transposed_copies``). The Gemm becomes
    ``MatMul(x, Transpose(W))`` (a non-constant B, so it is left alone) and
    :func:`_restore_shared_gemm` puts it back afterwards: the shared table stays float.
    """
    graph = model.graph
    inits = {i.name for i in graph.initializer}
    readers: dict[str, int] = {}
    for node in graph.node:
        for name in set(node.input):
            readers[name] = readers.get(name, 0) + 1
    nodes = []
    for k, node in enumerate(graph.node):
        attrs = {a.name: a for a in node.attribute}
        plain = (
            len(node.input) == 2
            and all(n not in attrs or attrs[n].f == 1.0 for n in ("alpha", "beta"))
            and not ("transA" in attrs and attrs["transA"].i)
        )
        if (
            node.op_type == "Gemm"
            and "transB" in attrs
            and attrs["transB"].i
            and plain
            and node.input[1] in inits
            and readers.get(node.input[1], 0) > 1
        ):
            t = f"{_SHARED}{k}"
            nodes.append(onnx.helper.make_node("Transpose", [node.input[1]], [t], name=t))
            nodes.append(onnx.helper.make_node("MatMul", [node.input[0], t], list(node.output), name=node.name))
        else:
            nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)


def _restore_shared_gemm(path: Path) -> None:
    model = onnx.load(str(path))
    graph = model.graph
    transposed = {
        n.output[0]: n.input[0] for n in graph.node if n.op_type == "Transpose" and n.name.startswith(_SHARED)
    }
    if not transposed:
        return
    nodes = []
    for node in graph.node:
        if node.name.startswith(_SHARED):
            continue
        if node.op_type == "MatMul" and node.input[1] in transposed:
            node = onnx.helper.make_node(
                "Gemm", [node.input[0], transposed[node.input[1]]], list(node.output), name=node.name, transB=1
            )
        nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.save(model, str(path))


def store_floats_f16(path: Path, min_elements: int = 16) -> None:
    """Store the float weights a quantizer left as f32 back as f16 + ``Cast`` (f16 sources).

    Initializers read by quantized operators (scales, zero points, packed weights) keep
    their type; onnxruntime folds the casts when it loads the graph, so compute is as before.
    """
    model = onnx.load(str(path))
    graph = model.graph
    quant_readers = {i for n in graph.node if n.op_type in _QUANT_OPS for i in n.input}
    kept, casts = [], []
    for init in graph.initializer:
        if (
            init.data_type == onnx.TensorProto.FLOAT
            and int(np.prod(init.dims)) >= min_elements
            and init.name not in quant_readers
        ):
            half = numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float16), name=init.name + "_f16")
            kept.append(half)
            casts.append(onnx.helper.make_node("Cast", [half.name], [init.name], to=onnx.TensorProto.FLOAT))
        else:
            kept.append(init)
    if not casts:
        return
    del graph.initializer[:]
    graph.initializer.extend(kept)
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(casts + nodes)
    onnx.save(model, str(path))


_QUANT_OPS = {
    "MatMulInteger",
    "DynamicQuantizeLinear",
    "DynamicQuantizeMatMul",
    "MatMulNBits",
    "QuantizeLinear",
    "DequantizeLinear",
    "QLinearMatMul",
    "ConvInteger",
    "QLinearConv",
    "GatherBlockQuantized",
}


def int4_weights(model: onnx.ModelProto, dst: Path, block: int = 32) -> None:
    """Weight-only int4 (asymmetric, ``block`` weights per scale): MatMul -> ``MatMulNBits``."""
    with _quiet(), _failure(dst, "int4"):
        quantizer_cls = _matmul_nbits_quantizer()
        quantizer = quantizer_cls(model, bits=4, block_size=block, is_symmetric=False, op_types_to_quantize=("MatMul",))
        quantizer.process()
        quantizer.model.save_model_to_file(str(dst), False)


def check_static(model: onnx.ModelProto, input_name: str, shape: Sequence[int], what: str) -> None:
    """Raise :class:`InputError` if the graph cannot be given fixed shapes for static QDQ."""
    bad = sorted({n.op_type for n in model.graph.node if n.op_type in _NOT_STATIC})
    if bad:
        raise InputError(
            f"{what} cannot be statically quantized: it uses {', '.join(bad)} "
            "(data-dependent shapes or control flow); use a dynamic recipe such as q8"
        )
    if len(shape) < 2 or any(d <= 0 for d in shape[1:]):
        raise InputError(
            f"{what} cannot be statically quantized: its input {input_name!r} has the "
            f"variable shape {list(shape)}, an NPU graph needs fixed sizes; use a dynamic recipe such as q8"
        )
    if input_name not in [i.name for i in model.graph.input]:
        raise InputError(f"{what} has no input {input_name!r}")


def qdq_static(
    model: onnx.ModelProto,
    dst: Path,
    input_name: str,
    shape: Sequence[int],
    batches: Iterable[np.ndarray],
    on_batch: Optional[Callable[[], None]] = None,
    activations: str = "uint16",
) -> None:
    """Static QDQ with 8-bit weights for NPU execution providers, calibrated on ``batches``.

    The input is fixed to ``[1, *shape[1:]]`` (NPU graphs have static shapes), ranges are
    min/max over the calibration inputs, and the QDQ layout follows onnxruntime's QNN
    configuration (``get_qnn_qdq_config``): uint8 weights, ``activations`` uint16 (QNN's
    "A16W8", which transformer towers need) or uint8.
    """
    from onnxruntime.quantization import CalibrationDataReader, QuantType, quantize
    from onnxruntime.quantization.execution_providers.qnn import get_qnn_qdq_config
    from onnxruntime.tools.onnx_model_utils import fix_output_shapes, make_input_shape_fixed

    fixed = [1, *[int(d) for d in shape[1:]]]
    check_static(model, input_name, fixed, dst.name)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it: Iterator[np.ndarray] = iter(batches)

        def get_next(self) -> Optional[dict[str, np.ndarray]]:
            x = next(self._it, None)
            if x is None:
                return None
            if on_batch is not None:
                on_batch()
            return {input_name: np.ascontiguousarray(x, np.float32).reshape(fixed)}

    with _quiet(), _failure(dst, "qdq-int8"):
        make_input_shape_fixed(model.graph, input_name, fixed)
        fix_output_shapes(model)
        model = htp_ready(model, dst)
        act = {"uint8": QuantType.QUInt8, "uint16": QuantType.QUInt16}[activations]
        config = get_qnn_qdq_config(model, Reader(), activation_type=act, weight_type=QuantType.QUInt8)
        quantize(model, str(dst), config)


def htp_ready(model: onnx.ModelProto, dst: Path) -> onnx.ModelProto:
    """The f32 graph rewritten into operators QNN's HTP takes, before it is quantized.

    onnxruntime's QNN preprocessing (``execution_providers.qnn.qnn_preprocess_model``) fuses
    the exact GELU's ``Erf`` sequence (``x * 0.5 * (1 + erf(x / sqrt 2))``, which HTP has no
    ``Erf`` kernel for) into one ``Gelu`` node, and ``ReduceL2`` sequences into
    ``LpNormalization``; the function is the same (exact GELU, no tanh approximation), so
    parity is kept. LayerNorm fusion is left off: the exporter already writes
    ``LayerNormalization`` (opset 17).
    """
    from onnxruntime.quantization.execution_providers.qnn import qnn_preprocess_model

    # Given a ModelProto, the preprocessor moves its weights into external data in a temporary
    # folder it then deletes, even when it changes nothing: hand it files instead.
    src, out = dst.with_name(dst.stem + ".htp-in.onnx"), dst.with_name(dst.stem + ".htp-pre.onnx")
    try:
        onnx.save(model, str(src))
        return onnx.load(str(out if qnn_preprocess_model(str(src), str(out)) else src))
    finally:
        src.unlink(missing_ok=True)
        out.unlink(missing_ok=True)


@contextmanager
def _quiet() -> Iterator[None]:
    """onnxruntime's quantizers log hints and INFO lines on the root logger; keep them off stderr."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(previous)


@contextmanager
def _failure(dst: Path, method: str) -> Iterator[None]:
    try:
        yield
    except (InputError, ExportError):
        raise
    except Exception as exc:  # the quantizers raise many kinds; keep it one line
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ExportError(f"onnxruntime could not quantize {dst.name} to {method}: {text}") from None


def _matmul_nbits_quantizer():
    # Importing this module calls logging.basicConfig(level=INFO) on the root logger, which
    # would make every later log line of the host program print: undo it.
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer
    except ImportError as exc:
        raise ExportError(f"int4 quantization needs the {exc.name} package: pip install onnx-ir") from None
    finally:
        for h in list(root.handlers):
            if h not in handlers:
                root.removeHandler(h)
        root.setLevel(level)
    return MatMulNBitsQuantizer
