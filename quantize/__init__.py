"""Bundle -> smaller bundle: GGUF k-quants (llama.cpp), int8/int4/QDQ ONNX (onnxruntime) and a
fidelity report measured against the source. Entry point: :func:`edge.quantize.api.quantize_bundle`."""
