"""Backend option types: validation, provider parsing, the short forms, and the CLI's builder."""

from __future__ import annotations

import dataclasses
import io
import logging

import pytest

import edge
from edge.errors import InputError
from edge.events import Placement
from edge.options import CPU, ExportOptions, LLMOptions, OnnxOptions, Provider, RuntimeOptions


@pytest.mark.parametrize(
    "text, name, options",
    [
        ("cpu", "CPUExecutionProvider", {}),
        ("CPUExecutionProvider", "CPUExecutionProvider", {}),
        ("CUDA:device_id=1", "CUDAExecutionProvider", {"device_id": "1"}),
        (
            " cuda : device_id = 0 , arena_extend_strategy=kSameAsRequested ",
            "CUDAExecutionProvider",
            {"device_id": "0", "arena_extend_strategy": "kSameAsRequested"},
        ),
        ("qnn:backend_path=C:\\qnn\\QnnHtp.dll", "QNNExecutionProvider", {"backend_path": "C:\\qnn\\QnnHtp.dll"}),
        ("VitisAIExecutionProvider", "VitisAIExecutionProvider", {}),
        ("coreml:", "CoreMLExecutionProvider", {}),
    ],
)
def test_provider_parse(text, name, options):
    p = Provider.parse(text)
    assert p == Provider(name, options)
    assert p.as_dict() == {"name": name, "options": options}


@pytest.mark.parametrize(
    "text, match",
    [
        ("", "needs a name"),
        (":device_id=0", "needs a name"),
        ("gpu", "unknown execution provider"),
        ("cuda:device_id", "key=value"),
        ("cuda:=1", "key=value"),
        ("cuda:device_id=0,device_id=1", "twice"),
    ],
)
def test_provider_parse_errors(text, match):
    with pytest.raises(InputError, match=match):
        Provider.parse(text)


def test_provider_values_and_immutability():
    given = {"device_id": 0, "gpu_mem_limit": 2.5}
    p = Provider("CUDAExecutionProvider", given)
    given["device_id"] = 7
    assert p.options == {"device_id": "0", "gpu_mem_limit": "2.5"}  # strings, a private copy
    assert hash(p) == hash(Provider("CUDAExecutionProvider", {"gpu_mem_limit": "2.5", "device_id": "0"}))
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.name = "x"
    for bad in ({"flag": True}, {"k": None}, {"": "1"}, {3: "1"}):
        with pytest.raises(InputError):
            Provider("CUDAExecutionProvider", bad)
    for bad in ("", "CUDA ExecutionProvider", None):
        with pytest.raises(InputError):
            Provider(bad)


def test_onnx_options():
    assert OnnxOptions().providers == (CPU,) and OnnxOptions().provider_names == ("CPUExecutionProvider",)
    o = OnnxOptions(threads=3, providers=["azure", CPU])  # names are parsed, a list becomes a tuple
    assert o.providers == (Provider("AzureExecutionProvider"), CPU)
    hash(o)
    for bad in (
        dict(threads=-1),
        dict(threads=5000),
        dict(providers=()),
        dict(providers="cpu"),
        dict(providers=(CPU, "cpu")),
        dict(providers=(3,)),
        dict(providers=CPU),
    ):
        with pytest.raises(InputError):
            OnnxOptions(**bad)


def test_llm_options_kv_dtype_follows_the_bundle_when_auto():
    auto = LLMOptions()
    assert auto.kv_dtype == "auto"
    assert auto.kv_cache_dtype("f32") == "f32"
    assert [auto.kv_cache_dtype(d) for d in ("f16", "q4_k_m", "q8_0")] == ["f16"] * 3
    assert LLMOptions(kv_dtype="f16").kv_cache_dtype("f32") == "f16"
    assert LLMOptions(kv_dtype="f32").kv_cache_dtype("q4_k_m") == "f32"
    for bad in (dict(n_ctx=3), dict(n_ctx=-1), dict(threads=-2), dict(n_batch=0), dict(kv_dtype="q8")):
        with pytest.raises(InputError):
            LLMOptions(**bad)


def test_runtime_options_simple_and_validation():
    r = RuntimeOptions.simple(threads=2, n_ctx=256, providers=("cpu",), verbose=True)
    assert r.vision == r.audio == OnnxOptions(threads=2)
    assert r.llm == LLMOptions(n_ctx=256, threads=2) and r.verbose
    assert RuntimeOptions() == RuntimeOptions.simple()
    for bad in (dict(vision=LLMOptions()), dict(llm=OnnxOptions()), dict(audio=None), dict(verbose="yes")):
        with pytest.raises(InputError):
            RuntimeOptions(**bad)
    with pytest.raises(InputError, match="context size"):
        RuntimeOptions.simple(n_ctx=3)
    with pytest.raises(InputError, match="threads"):
        RuntimeOptions.simple(threads=-2)


def test_export_options_carry_the_backends():
    assert ExportOptions(threads=3).runtime == RuntimeOptions.simple(threads=3)
    mine = RuntimeOptions.simple(threads=1, providers=("azure", "cpu"))
    assert ExportOptions(threads=3, runtime=mine).runtime is mine
    with pytest.raises(InputError):
        ExportOptions(runtime=OnnxOptions())


def test_quantize_options_carry_the_backends():
    from edge.quantize.api import QuantizeOptions

    assert QuantizeOptions(threads=2).runtime == RuntimeOptions.simple(threads=2)
    mine = RuntimeOptions.simple(threads=1)
    assert QuantizeOptions(threads=4, runtime=mine).runtime is mine


def test_load_takes_one_form_of_options(tmp_path):
    # checked before the bundle is opened
    with pytest.raises(InputError, match="either options or threads"):
        edge.load(tmp_path, RuntimeOptions(), threads=2)
    with pytest.raises(InputError, match="RuntimeOptions"):
        edge.load(tmp_path, OnnxOptions())
    with pytest.raises(InputError, match="context size"):
        edge.load(tmp_path, n_ctx=3)
    with pytest.raises(InputError, match="not both"):
        edge.load_speech(tmp_path, OnnxOptions(), threads=2)
    with pytest.raises(InputError, match="OnnxOptions"):
        edge.load_speech(tmp_path, RuntimeOptions())


def test_cli_builds_the_options_once_from_its_flags():
    from edge.apps.backends import onnx_options, runtime_options

    assert onnx_options(2, []) == OnnxOptions(threads=2)
    r = runtime_options(2, 128, ["cuda:device_id=1", "cpu"], verbose=False)
    want = OnnxOptions(threads=2, providers=(Provider("CUDAExecutionProvider", {"device_id": "1"}), CPU))
    assert r.vision == r.audio == want
    assert r.llm == LLMOptions(n_ctx=128, threads=2)
    with pytest.raises(InputError):
        runtime_options(0, 0, ["nonsense"])


def test_cli_log_lines(monkeypatch):
    from edge.apps.backends import setup_logging

    logger = logging.getLogger("edge")
    monkeypatch.setattr(logger, "handlers", [])
    monkeypatch.setattr(logger, "propagate", True)
    monkeypatch.delenv("EDGE_DEBUG", raising=False)
    err = io.StringIO()
    monkeypatch.setattr("sys.stderr", err)
    level = logger.level
    try:
        setup_logging(False)
        setup_logging(False)  # idempotent: one handler
        assert len(logger.handlers) == 1 and not logger.propagate
        logging.getLogger("edge.onnxruntime").warning("vision.onnx: %s", "a warning")
        logging.getLogger("edge.onnxruntime").info("not shown")
        setup_logging(True)
        logging.getLogger("edge.onnxruntime").info("vision.onnx: 3 nodes on CPUExecutionProvider")
        logging.getLogger("edge.onnxruntime").debug("still not shown")
    finally:
        logger.setLevel(level)
    assert err.getvalue().splitlines() == [
        "edge: warning: vision.onnx: a warning",
        "edge: info: vision.onnx: 3 nodes on CPUExecutionProvider",
    ]


def test_placement_reasons():
    ok = Placement("v.onnx", ("CPUExecutionProvider",), ("CPUExecutionProvider",), (("CPUExecutionProvider", 5),))
    assert not ok.fallback and ok.as_dict()["nodes"] == {"CPUExecutionProvider": 5}
    dropped = Placement(
        "v.onnx",
        ("CUDAExecutionProvider", "CPUExecutionProvider"),
        ("CPUExecutionProvider",),
        (("CPUExecutionProvider", 5),),
    )
    assert dropped.fallback
    assert dropped.reasons[0] == "CUDAExecutionProvider was asked for but onnxruntime did not register it"
    assert "5 of 5 nodes do not run on CUDAExecutionProvider" in dropped.reasons[1]
    split = Placement(
        "v.onnx",
        ("CUDAExecutionProvider", "CPUExecutionProvider"),
        ("CUDAExecutionProvider", "CPUExecutionProvider"),
        (("CUDAExecutionProvider", 40), ("CPUExecutionProvider", 2)),
    )
    assert split.reasons == (
        "2 of 42 nodes do not run on CUDAExecutionProvider, asked for first (2 on CPUExecutionProvider)",
    )
    unknown = Placement("v.onnx", ("CPUExecutionProvider",), ("CPUExecutionProvider",))
    assert not unknown.fallback and unknown.as_dict()["nodes"] == {}
