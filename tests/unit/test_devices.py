"""Device choice: the documented auto rule on made-up machines, --device/--gpu-layers/--fallback
parsing, onnxruntime's placement lines, and `edge doctor`'s device report."""

from __future__ import annotations

import json

import pytest

from edge.apps.backends import gpu_layers_option, parse_devices, runtime_options
from edge.errors import InputError
from edge.options import LLMOptions, OnnxOptions, Provider
from edge.runtime.devices import EpDevice, llm_layers, onnx_choice
from edge.runtime.onnx_backend import GraphPlacement, placed_ops, unsupported_ops

CPU = "CPUExecutionProvider"
QNN = "QNNExecutionProvider"
CUDA = "CUDAExecutionProvider"
LAPTOP = [EpDevice(CPU, "CPU")]
EMULATOR = [EpDevice(CPU, "CPU"), EpDevice(QNN, "CPU", plugin="onnxruntime_qnn")]
PHONE = [EpDevice(CPU, "CPU"), EpDevice(QNN, "NPU", "Qualcomm", "onnxruntime_qnn")]


def test_auto_puts_qdq_vision_on_a_real_npu_strictly_with_a_cpu_way_out():
    c = onnx_choice("auto", "qdq-int8", [QNN, CPU], PHONE)
    assert (c.device, c.providers, c.strict) == ("npu", (QNN, CPU), True)
    assert c.otherwise is not None and c.otherwise.providers == (CPU,)
    assert "NPU" in c.reason


def test_auto_never_picks_the_htp_emulator():
    c = onnx_choice("auto", "qdq-int8", [QNN, CPU], EMULATOR)
    assert c.device == "cpu" and "emulator" in c.reason


def test_auto_puts_float_graphs_on_a_gpu_and_quantized_ones_off_it():
    assert onnx_choice("auto", "f16", [CUDA, CPU], LAPTOP).providers == (CUDA, CPU)
    assert onnx_choice("auto", "int8", [CUDA, CPU], LAPTOP).device == "cpu"
    assert onnx_choice("auto", "f32", [CPU], LAPTOP).reason == "auto: no GPU or NPU execution provider found"


def test_asked_devices():
    assert onnx_choice("cpu", "qdq-int8", [QNN, CPU], PHONE).providers == (CPU,)
    npu = onnx_choice("npu", "f32", [QNN, CPU], EMULATOR, fallback="error")
    assert npu.providers == (QNN, CPU) and npu.strict and "emulator" in npu.reason
    with pytest.raises(InputError, match="onnxruntime-qnn"):
        onnx_choice("npu", "qdq-int8", [CPU], LAPTOP)
    with pytest.raises(InputError, match="onnxruntime-gpu"):
        onnx_choice("gpu", "f16", [CPU], LAPTOP)
    with pytest.raises(InputError, match="unknown --device 'tpu'"):
        onnx_choice("tpu", "f16", [CPU], LAPTOP)


def test_llm_layers_rule():
    assert llm_layers("cpu", None, ["CUDA0"], 30) == (0, "asked for")
    assert llm_layers("auto", None, ["CUDA0"], 30)[0] == 30
    assert llm_layers("auto", None, [], 30) == (0, "auto: llama.cpp has no GPU backend here")
    assert llm_layers("gpu", 12, ["Vulkan0"], 30) == (12, "asked for: 12 of 30 layers on Vulkan0")
    with pytest.raises(InputError, match="CMAKE_ARGS"):
        llm_layers("gpu", None, [], 30)
    with pytest.raises(InputError, match="no NPU backend"):
        llm_layers("npu", None, ["CUDA0"], 30)


def test_device_flags():
    assert parse_devices([]) == {}
    assert parse_devices(["npu"]) == {"vision": "npu", "audio": "cpu", "llm": "cpu"}
    assert parse_devices(["auto", "llm=cpu"]) == {"vision": "auto", "audio": "auto", "llm": "cpu"}
    assert parse_devices(["Vision=GPU"]) == {"vision": "gpu"}
    for bad, match in (
        (["tpu"], "unknown device 'tpu'"),
        (["camera=cpu"], "unknown component 'camera'"),
        (["cpu", "gpu"], "given twice"),
        (["llm=cpu", "llm=gpu"], "given twice for llm"),
    ):
        with pytest.raises(InputError, match=match):
            parse_devices(bad)
    from edge.apps.backends import audio_devices

    assert parse_devices(audio_devices(["npu"])) == {"audio": "npu"}  # transcribe/listen: the speech graphs'
    assert gpu_layers_option("auto") is None and gpu_layers_option("12") == 12
    for bad in ("-1", "many"):
        with pytest.raises(InputError, match="--gpu-layers"):
            gpu_layers_option(bad)


def test_runtime_options_from_flags():
    r = runtime_options(devices=["npu"], fallback="error")
    assert (r.vision.device, r.vision.fallback, r.audio.device, r.llm.device) == ("npu", "error", "cpu", "cpu")
    assert runtime_options(gpu_layers="8").llm == LLMOptions(device="gpu", gpu_layers=8)
    assert runtime_options() == runtime_options(0, 0, [])  # no device flags: today's options
    assert runtime_options().vision.device is None
    with pytest.raises(InputError, match="not both"):
        runtime_options(providers=["qnn"], devices=["npu"])
    with pytest.raises(InputError, match="unknown fallback 'maybe'"):
        runtime_options(fallback="maybe")


def test_option_types_check_devices():
    assert OnnxOptions(device="NPU").device == "npu"
    with pytest.raises(InputError, match="not both"):
        OnnxOptions(device="gpu", providers=("cuda",))
    with pytest.raises(InputError, match="unknown LLM device"):
        LLMOptions(device="tpu")
    with pytest.raises(InputError, match="LLM device is cpu"):
        LLMOptions(gpu_layers=3)
    with pytest.raises(InputError, match="gpu layers"):
        LLMOptions(device="gpu", gpu_layers=-2)


def test_qnn_provider_options_parse():
    p = Provider.parse("qnn:soc_model=60,htp_performance_mode=burst")
    assert p == Provider(QNN, {"soc_model": "60", "htp_performance_mode": "burst"})
    for bad in ("qnn:soc_model", "qnn:=3", "qnn:a=1,a=2", ":x=1"):
        with pytest.raises(InputError):
            Provider.parse(bad)


LOG = [
    "2026-12-02 00:31:48.559511342 [V:onnxruntime:, session_state.cc:1604 VerifyEachNodeIsAssignedToAnEp]  "
    "Node(s) placed on [QNNExecutionProvider]. Number of nodes: 1",
    "2026-12-02 00:31:48.559514136 [V:onnxruntime:, session_state.cc:1606 VerifyEachNodeIsAssignedToAnEp]   "
    "QNNExecutionProvider_675_2 (QNNExecutionProvider_QNNExecutionProvider_675_2_0)",
    "2026-12-02 00:31:48.559519094 [V:onnxruntime:, session_state.cc:1604 VerifyEachNodeIsAssignedToAnEp]  "
    "Node(s) placed on [CPUExecutionProvider]. Number of nodes: 2",
    "2026-12-02 00:31:48.559521537 [V:onnxruntime:, session_state.cc:1606 VerifyEachNodeIsAssignedToAnEp]   "
    "Erf (/projector/act/Erf)",
    "2026-12-02 00:31:48.559524001 [V:onnxruntime:, session_state.cc:1606 VerifyEachNodeIsAssignedToAnEp]   "
    "DequantizeLinear (/projector/act/Div_output_0_DequantizeLinear)",
    "2026-12-02 00:31:48.559534437 [W:onnxruntime:, session_state.cc:1618 VerifyEachNodeIsAssignedToAnEp] Some nodes",
    "\x1b[1;31m2026-12-02 00:31:49.115867545 [E:onnxruntime:, qnn_execution_provider.cc:2453 GetCapabilityImpl] "
    "Unsupported nodes in QNN EP: { name: /projector/act/Erf, type: Erf }\x1b[m",
]


def test_placement_lines_name_the_operators_that_fell_back():
    ops = dict(placed_ops(LOG))
    assert ops[CPU] == ("Erf", "DequantizeLinear")
    assert unsupported_ops(LOG) == ["Erf (/projector/act/Erf)"]
    p = GraphPlacement(
        "vision.onnx", (QNN, CPU), (QNN, CPU), ((QNN, 1), (CPU, 2)), "npu", "asked for", tuple(ops.items())
    )
    d = p.as_dict()
    assert d["fallback"] and d["fallback_ops"] == {CPU: ["DequantizeLinear", "Erf"]} and d["device"] == "npu"
    assert json.loads(json.dumps(d)) == d


def test_doctor_reports_devices_and_what_to_install():
    from edge.apps.device_cmds import device_report

    report = device_report()
    kinds = {(d["provider"], d["kind"]) for d in report["onnxruntime_devices"]}
    assert (CPU, "CPU") in kinds
    assert any(d["type"] == "CPU" for d in report["llama_cpp_devices"])
    if not report["llama_cpp_gpu_offload"]:
        assert "CMAKE_ARGS" in report["install"]["llm_gpu"]
    if QNN in report["onnxruntime_plugins"]:  # the emulator on x86-64: an NPU provider on the CPU
        assert any(d["provider"] == QNN and d["emulated"] for d in report["onnxruntime_devices"])
        assert report["npu_providers"] == [QNN] and report["install"]["npu"] is None
    json.dumps(report)
