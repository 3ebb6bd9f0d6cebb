"""Vision tower + projector -> ONNX (TorchScript exporter), and f16 weight storage."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import helper, numpy_helper

from edge.errors import ExportError

OPSET = 17


def export_onnx(module: torch.nn.Module, path: Path, example: torch.Tensor, input_name: str, output_name: str) -> None:
    """Trace ``module(pixel_values)`` into ``path`` with a dynamic batch axis."""
    module.eval()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(
                module,
                (example,),
                str(path),
                input_names=[input_name],
                output_names=[output_name],
                dynamic_axes={input_name: {0: "images"}, output_name: {0: "images"}},
                opset_version=OPSET,
                do_constant_folding=True,
                dynamo=False,
            )
        except Exception as exc:  # the exporter raises many kinds; report one line
            raise ExportError(f"ONNX export of the vision tower failed: {exc}") from None


def store_weights_f16(path: Path, min_elements: int = 16) -> None:
    """Store float32 weights as float16 and cast them back to float32 in the graph.

    This halves the file while compute stays f32: onnxruntime's CPU provider has few
    f16 kernels, and f32 compute keeps parity with the reference tight. Small
    tensors (shapes, scalars) stay f32.
    """
    model = onnx.load(str(path))
    graph = model.graph
    casts = []
    kept = []
    for init in graph.initializer:
        if init.data_type == onnx.TensorProto.FLOAT and int(np.prod(init.dims)) >= min_elements:
            arr = numpy_helper.to_array(init).astype(np.float16)
            half = numpy_helper.from_array(arr, name=init.name + "_f16")
            kept.append(half)
            casts.append(helper.make_node("Cast", [half.name], [init.name], to=onnx.TensorProto.FLOAT))
        else:
            kept.append(init)
    del graph.initializer[:]
    graph.initializer.extend(kept)
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(casts + nodes)
    onnx.save(model, str(path))
