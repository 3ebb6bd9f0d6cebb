"""The backends' logs are never thrown away: onnxruntime's lines reach the ``edge.onnxruntime``
logger (with the session's node placement), and each llama.cpp call logs into its own sink.

Real onnxruntime and llama.cpp on graphs and a GGUF written here (milliseconds), no mocks.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper, numpy_helper

from edge.errors import InputError, RuntimeFailure
from edge.options import LLMOptions, OnnxOptions, Provider
from edge.runtime import llama_backend as lb
from edge.runtime.onnx_backend import open_session, relay_log

ORT = "edge.onnxruntime"


def _graph(path: Path, unused_initializer: bool = False) -> Path:
    """y = reshape(relu(x), shape(relu(x))): two nodes on CPU (Shape is folded away)."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    nodes = [
        helper.make_node("Relu", ["x"], ["h"]),
        helper.make_node("Shape", ["h"], ["s"]),
        helper.make_node("Reshape", ["h", "s"], ["y"]),
    ]
    extra = [numpy_helper.from_array(np.ones(3, np.float32), "unused_w")] if unused_initializer else []
    graph = helper.make_graph(nodes, "g", [x], [y], initializer=extra)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def test_a_warning_reaches_the_logger(tmp_path, caplog, capfd):
    graph = _graph(tmp_path / "warn.onnx", unused_initializer=True)
    with caplog.at_level(logging.DEBUG, logger=ORT):
        session = open_session(graph, OnnxOptions(threads=1))
    warnings = [r for r in caplog.records if r.name == ORT and r.levelno == logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings[0].getMessage().startswith("warn.onnx: Removing initializer 'unused_w'")
    assert "\x1b[" not in warnings[0].getMessage()  # onnxruntime's colours are stripped
    assert warnings[0].onnxruntime_source.startswith("graph.cc:")
    assert any(r.levelno == logging.DEBUG for r in caplog.records)  # the verbose chatter, kept at DEBUG
    # nothing of it leaked to the real stderr, and fd 2 works again afterwards
    os.write(2, b"after\n")
    assert capfd.readouterr().err == "after\n"
    out = session.run(None, {"x": np.array([[-1, 2, -3, 4]], np.float32)})
    assert out[0].tolist() == [[0, 2, 0, 4]]


def test_cpu_placement_is_reported(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger=ORT):
        session = open_session(_graph(tmp_path / "g.onnx"), OnnxOptions())
    p = session.placement
    assert p.requested == p.providers == ("CPUExecutionProvider",)
    assert dict(p.nodes) == {"CPUExecutionProvider": 2} and not p.fallback
    assert "g.onnx: 2 nodes on CPUExecutionProvider" in [r.getMessage() for r in caplog.records]


def test_nodes_that_do_not_run_on_the_first_provider_are_a_fallback(tmp_path, caplog):
    # The Azure provider is registered by every onnxruntime build, yet takes no ordinary node:
    # everything lands on the CPU provider, which must be reported, never silent.
    if "AzureExecutionProvider" not in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime build has no AzureExecutionProvider")
    options = OnnxOptions(providers=(Provider("AzureExecutionProvider"), Provider("CPUExecutionProvider")))
    with caplog.at_level(logging.WARNING, logger=ORT):
        session = open_session(_graph(tmp_path / "g.onnx"), options)
    p = session.placement
    assert p.requested == ("AzureExecutionProvider", "CPUExecutionProvider")
    assert "AzureExecutionProvider" in p.providers and dict(p.nodes) == {"CPUExecutionProvider": 2}
    assert p.fallback and p.reasons == (
        "2 of 2 nodes do not run on AzureExecutionProvider, asked for first (2 on CPUExecutionProvider)",
    )
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warned == [f"g.onnx: execution provider fallback: {p.reasons[0]}"]
    assert json.loads(json.dumps(p.as_dict()))["fallback"] is True


def test_a_provider_this_build_lacks_is_an_error(tmp_path):
    absent = next(
        p
        for p in ("CUDAExecutionProvider", "CoreMLExecutionProvider", "QNNExecutionProvider")
        if p not in onnxruntime.get_available_providers()
    )
    with pytest.raises(InputError, match=f"onnxruntime has no {absent} here"):
        open_session(_graph(tmp_path / "g.onnx"), OnnxOptions(providers=(absent, "cpu")))


def test_a_broken_graph_is_one_line_and_restores_stderr(tmp_path, capfd):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a graph")
    with pytest.raises(RuntimeFailure, match="onnxruntime cannot load bad.onnx") as info:
        open_session(bad, OnnxOptions())
    assert "\n" not in str(info.value)
    os.write(2, b"still here\n")
    assert capfd.readouterr().err.endswith("still here\n")


def test_relay_log_levels_continuations_and_foreign_lines(caplog, capsys):
    lines = [
        "not onnxruntime's",
        "\x1b[0;93m2026-01-01 10:00:00.1 [W:onnxruntime:, a.cc:1 F] first\x1b[m",
        "  continued",
        "2026-01-01 10:00:00.2 [E:onnxruntime:Default, b.cc:2 G] broken",
        "2026-01-01 10:00:00.3 [V:onnxruntime:, session_state.cc:1 V]  Node(s) placed on [XExecutionProvider]. "
        "Number of nodes: 3",
        "2026-01-01 10:00:00.4 [I:onnxruntime:, c.cc:3 H] info",
    ]
    with caplog.at_level(logging.DEBUG, logger=ORT):
        placed = relay_log(lines, "g.onnx")
    assert placed == (("XExecutionProvider", 3),)
    got = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == ORT]
    assert got[:2] == [(logging.WARNING, "g.onnx: first\n  continued"), (logging.ERROR, "g.onnx: broken")]
    assert [lvl for lvl, _ in got[2:]] == [logging.DEBUG, logging.DEBUG]
    assert capsys.readouterr().err == "not onnxruntime's\n"  # another writer's line goes back to stderr


# --- llama.cpp ---------------------------------------------------------------------------


def _gguf(path: Path, seed: int = 0) -> Path:
    """A random one-layer Llama with a 64-token SentencePiece vocabulary."""
    from edge.export.llm_llama import LlamaHParams, write_llama_gguf
    from edge.export.tokenizer import TokenizerMeta

    rng = np.random.default_rng(seed)
    v, d, f, h = 64, 64, 128, 4
    hp = LlamaHParams(
        n_vocab=v,
        n_embd=d,
        n_layer=1,
        n_head=h,
        n_head_kv=h,
        n_ff=f,
        head_dim=d // h,
        n_ctx_train=128,
        rms_eps=1e-5,
        rope_theta=10000.0,
    )
    words = ["\u2581" + chr(97 + i % 26) * (1 + i // 26) for i in range(v - 19)]
    tok = TokenizerMeta(
        model="llama",
        pre=None,
        tokens=["<unk>", "<s>", "</s>"] + [f"<0x{i:02X}>" for i in range(16)] + words,
        token_types=[2, 3, 3] + [6] * 16 + [1] * len(words),
        scores=[0.0] * 19 + [-float(i) for i in range(len(words))],
        bos_id=1,
        eos_id=2,
        unk_id=0,
    )

    def w(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.05).astype(np.float32)

    one = np.ones(d, np.float32)
    tensors = [
        ("model.embed_tokens.weight", w(v, d)),
        ("model.norm.weight", one),
        ("lm_head.weight", w(v, d)),
        ("model.layers.0.input_layernorm.weight", one),
        ("model.layers.0.post_attention_layernorm.weight", one),
        ("model.layers.0.mlp.gate_proj.weight", w(f, d)),
        ("model.layers.0.mlp.up_proj.weight", w(f, d)),
        ("model.layers.0.mlp.down_proj.weight", w(d, f)),
    ]
    tensors += [(f"model.layers.0.self_attn.{n}_proj.weight", w(d, d)) for n in "qkvo"]
    write_llama_gguf(path, hp, tensors, tok, "f32", "tiny")
    return path


@pytest.fixture(scope="module")
def gguf_file(tmp_path_factory) -> Path:
    return _gguf(tmp_path_factory.mktemp("gguf") / "tiny.gguf")


def test_a_sink_keeps_lines_listens_and_echoes(capsys):
    heard: list[str] = []
    sink = lb.LogSink(verbose=True, listener=heard.append, keep=2)
    assert sink.last_error() == "no details"
    for text in ("one\n", "two\n", "\n", "three\n"):
        sink.write(2, text)
    assert list(sink.recent) == ["", "three"] and sink.last_error() == "three"
    assert heard == ["one\n", "two\n", "\n", "three\n"]
    assert capsys.readouterr().err == "one\ntwo\n\nthree\n"


def test_the_quiet_default_is_back_after_every_call(gguf_file):
    assert lb.active_log_sink() is None
    sink = lb.LogSink()
    with sink.active():
        assert lb.active_log_sink() is sink
    assert lb.active_log_sink() is None
    with pytest.raises(ZeroDivisionError):
        with sink.active():
            1 / 0
    assert lb.active_log_sink() is None
    llm = lb.LLM(gguf_file, LLMOptions(n_ctx=32, threads=1))
    assert lb.active_log_sink() is None
    llm.eval_tokens(llm.tokenize("a b", add_bos=True))
    assert lb.active_log_sink() is None
    llm.close()
    assert lb.active_log_sink() is None


def test_two_llms_and_a_quantize_keep_their_own_lines(gguf_file, tmp_path):
    a = lb.LLM(gguf_file, LLMOptions(n_ctx=64, threads=1), weights_dtype="f32")
    seen_a = list(a.log.recent)
    assert seen_a and a.kv_dtype == "f32"  # "auto" KV follows f32 weights
    assert not any("n_tokens =   96" in line for line in seen_a)
    b = lb.LLM(gguf_file, LLMOptions(n_ctx=96, threads=1))
    assert b.kv_dtype == "f16"
    assert any("n_tokens =   96" in line for line in b.log.recent)
    assert list(a.log.recent) == seen_a  # b's load went to b's sink only
    seen_b = list(b.log.recent)

    progress: list[tuple[int, int]] = []
    lb.quantize_gguf(gguf_file, tmp_path / "q8.gguf", "Q8_0", 1, lambda done, total: progress.append((done, total)))
    assert progress and progress[-1][0] == progress[-1][1] > 0  # read from the quantizer's own sink
    assert list(a.log.recent) == seen_a and list(b.log.recent) == seen_b

    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 60)
    with pytest.raises(RuntimeFailure) as info:
        lb.quantize_gguf(bad, tmp_path / "out.gguf", "Q8_0", 1)
    assert "no details" not in str(info.value) and str(info.value).split(": ", 1)[1] not in seen_a + seen_b
    with pytest.raises(RuntimeFailure, match="llama.cpp cannot load .*bad.gguf: .+") as info:
        lb.LLM(bad)
    assert "no details" not in str(info.value)
    assert list(a.log.recent) == seen_a and list(b.log.recent) == seen_b

    q = lb.LLM(tmp_path / "q8.gguf", LLMOptions(n_ctx=32, threads=1))
    logits = a.eval_tokens(a.tokenize("a b c", add_bos=True))
    assert logits.shape == (64,) and list(b.log.recent) == seen_b
    for llm in (a, b, q):
        llm.close()
    assert lb.active_log_sink() is None
