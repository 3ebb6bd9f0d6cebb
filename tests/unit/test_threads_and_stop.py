"""Thread defaults (edge's rule, llama.cpp's threadpool binding, onnxruntime's spinning), the
Ctrl-C flag of the CLI, fidelity modes, and the option messages that must agree with the help."""

from __future__ import annotations

import ctypes
import io
import os
import signal

import pytest

from edge.errors import InputError
from edge.events import FinishEvent, Timings, TokenEvent
from edge.options import (
    PROBE_BUDGET,
    QUICK_PROBE_IMAGES,
    Budget,
    ExportOptions,
    LLMOptions,
    OnnxOptions,
    QuantizeOptions,
)
from edge.runtime import cpu


@pytest.mark.parametrize("cores, threads", [(1, 1), (2, 1), (4, 3), (8, 7), (16, 15)])
def test_auto_threads_leave_the_llm_one_core_less(monkeypatch, cores, threads):
    monkeypatch.setattr(cpu, "physical_cores", lambda: cores)
    assert cpu.llm_threads() == threads
    assert cpu.onnx_threads() == cores


def test_physical_cores_are_at_most_the_available_cpus():
    assert 1 <= cpu.physical_cores() <= cpu.available_cpus() <= (os.cpu_count() or 1)


def test_thread_and_poll_options_and_their_messages():
    assert LLMOptions().threads == 0 and LLMOptions().poll == 0
    assert OnnxOptions().threads == 0 and OnnxOptions().spinning is False
    for make in (LLMOptions, OnnxOptions, ExportOptions, QuantizeOptions):
        with pytest.raises(InputError, match=r"threads must be 0 \(auto\) or 1 to 1024, got -1"):
            make(threads=-1)
    assert LLMOptions(poll=100).poll == 100
    for bad in (-1, 101, True, 2.5):
        with pytest.raises(InputError, match="poll must be between 0"):
            LLMOptions(poll=bad)
    with pytest.raises(InputError, match="spinning"):
        OnnxOptions(spinning="yes")


def test_threads_help_says_what_the_options_accept():
    from edge.apps.cli_options import THREADS

    assert THREADS.default == 0
    assert "0 = auto" in THREADS.help and "1 to 1024" in THREADS.help


def test_threadpool_params_layout_matches_the_library():
    from edge.runtime import llama_backend as lb

    # ggml.h: bool cpumask[GGML_MAX_N_THREADS]; int n_threads; enum prio; uint32_t poll; bool strict_cpu; bool paused
    assert lb.ThreadpoolParams.n_threads.offset == 512
    assert lb.ThreadpoolParams.poll.offset == 520 and lb.ThreadpoolParams.paused.offset == 525
    assert ctypes.sizeof(lb.ThreadpoolParams) == 528
    api = lb._threadpool_api()
    assert api is not None, "the wheel's libraries export ggml's threadpool API"
    pool = api.new(ctypes.byref(lb.ThreadpoolParams(n_threads=1, poll=0)))
    assert pool
    api.free(pool)


def test_fidelity_modes():
    quick = QuantizeOptions()
    assert quick.fidelity == "quick" and quick.fidelity_probes() == (QUICK_PROBE_IMAGES, PROBE_BUDGET)
    assert QuantizeOptions(generated_images=2).fidelity_probes() == (2, PROBE_BUDGET)
    assert QuantizeOptions(fidelity="full").fidelity_probes() == (12, Budget())
    with pytest.raises(InputError, match="fidelity must be quick or full"):
        QuantizeOptions(fidelity="thorough")


def test_stop_on_interrupt_sets_a_flag_then_quits_on_a_second_one():
    from edge.apps.interrupt import StopOnInterrupt

    before = signal.getsignal(signal.SIGINT)
    with StopOnInterrupt() as stop:
        assert not stop.requested
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.requested  # the handler ran at the next bytecode: no KeyboardInterrupt
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(1000):  # the handler runs between bytecodes
                pass
    assert signal.getsignal(signal.SIGINT) is before


def _events(log: list):
    try:
        for i in range(100):
            yield TokenEvent(i, f"t{i} ")
        yield FinishEvent("length", "", [], Timings())
    finally:
        log.append("closed")


def test_stream_answer_stops_between_tokens_and_closes_the_stream(monkeypatch):
    from edge.apps import repl

    class Stop:
        requested = False

    out, err = io.StringIO(), io.StringIO()
    monkeypatch.setattr("sys.stdout", out)
    monkeypatch.setattr("sys.stderr", err)
    log: list = []
    stop = Stop()

    def events():
        for ev in _events(log):
            if getattr(ev, "id", None) == 3:
                stop.requested = True  # Ctrl-C arrived while token 3 was being made
            yield ev

    assert repl.stream_answer(events(), stop) is None
    assert out.getvalue() == "t0 t1 t2 \n" and "[stopped]" in err.getvalue()
    assert log == ["closed"]
    stop.requested = False
    assert isinstance(repl.stream_answer(_events(log), stop), FinishEvent)
    assert log == ["closed", "closed"] and "tokens, prefill" in err.getvalue()
