"""The backend options of a command, built once from its flags, and where the backends' log goes.

Every command that runs a bundle (run, chat, transcribe, listen, export's parity check,
quantize's fidelity run) turns ``--threads``, ``--ctx``, ``--provider`` and ``--verbose`` into
:class:`~edge.options.RuntimeOptions` here and passes them down; nothing below builds its own.

Logging: the CLI shows the ``edge`` loggers (``edge.onnxruntime`` carries onnxruntime's own
messages and every execution provider fallback) on stderr as ``edge: warning: ...`` lines.
Without ``--verbose`` WARNING and above are shown; with it INFO too (where each graph runs)
and llama.cpp's log is echoed; ``EDGE_DEBUG=1`` also shows DEBUG (onnxruntime's verbose
chatter) besides the traceback of an internal error.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Optional, Sequence

from edge.errors import InputError
from edge.options import CPU, DEVICES, LLMOptions, OnnxOptions, Provider, RuntimeOptions

LOGGER = "edge"
COMPONENTS = ("vision", "audio", "llm")
# what ``--device D`` (the whole bundle) means per component: no recipe makes NPU audio graphs
# and llama.cpp has no NPU backend, so "npu" is the vision graph's alone (docs/devices.md)
_WHOLE = {"npu": {"vision": "npu", "audio": "cpu", "llm": "cpu"}}


def onnx_options(
    threads: int = 0, providers: Sequence[str] = (), device: Optional[str] = None, fallback: str = "cpu"
) -> OnnxOptions:
    """onnxruntime options from ``--threads``, the ``--provider`` values (none = CPU), a device
    (None: the providers as given) and ``--fallback``."""
    parsed = tuple(Provider.parse(p) for p in providers) or (CPU,)
    if device is not None and providers:
        raise InputError(f"give --device {device} or --provider {providers[0]} for the graphs, not both")
    return OnnxOptions(threads=threads, providers=parsed, device=device, fallback=fallback)


def parse_devices(values: Sequence[str]) -> dict[str, str]:
    """``--device`` values -> a device per component: ``D`` for the whole bundle and
    ``COMPONENT=D`` (vision, audio, llm) overriding it; components not named are absent."""
    whole, per = None, {}
    for value in values:
        name, eq, dev = value.partition("=")
        if not eq:
            if whole is not None:
                raise InputError(f"--device is given twice for the whole bundle ({whole}, {value})")
            whole = _device(value)
            continue
        comp = name.strip().lower()
        if comp not in COMPONENTS:
            raise InputError(f"unknown component {name!r} in --device {value} (components: {', '.join(COMPONENTS)})")
        if comp in per:
            raise InputError(f"--device is given twice for {comp}")
        per[comp] = _device(dev)
    out = {c: _WHOLE.get(whole, {}).get(c, whole) for c in COMPONENTS} if whole is not None else {}
    out.update(per)
    return out


def audio_devices(values: Sequence[str]) -> list[str]:
    """``--device``/``--compute`` of a speech command: a bare device is the speech graphs' own."""
    return [v if "=" in v else f"audio={v}" for v in values]


def _device(text: str) -> str:
    value = text.strip().lower()
    if value not in DEVICES:
        raise InputError(f"unknown device {text!r} (devices: {', '.join(DEVICES)}; or COMPONENT=DEVICE)")
    return value


def gpu_layers_option(text: Optional[str]) -> Optional[int]:
    """``--gpu-layers``: ``auto`` (all layers when llama.cpp has a GPU) -> None, or a count."""
    if text is None or text.strip().lower() == "auto":
        return None
    try:
        value = int(text)
    except ValueError:
        raise InputError(f"--gpu-layers must be auto or a number of layers, got {text!r}") from None
    if value < 0:
        raise InputError(f"--gpu-layers must be auto or a number of layers, got {text!r}")
    return value


def runtime_options(
    threads: int = 0,
    ctx: int = 0,
    providers: Sequence[str] = (),
    verbose: bool = False,
    devices: Sequence[str] = (),
    fallback: str = "cpu",
    gpu_layers: Optional[str] = None,
) -> RuntimeOptions:
    """Every component's options from the flags of one command: the same threads everywhere,
    ``--ctx`` for the LLM, the ``--provider`` list for the vision and audio graphs, ``--device``
    (see :func:`parse_devices`), ``--fallback`` for the graphs and ``--gpu-layers`` for the LLM
    (given alone, it puts the LLM on the GPU)."""
    where = parse_devices(devices)
    layers = gpu_layers_option(gpu_layers)
    llm_device = where.get("llm", "gpu" if gpu_layers is not None else "cpu")
    vision = onnx_options(threads, providers, where.get("vision"), fallback)
    audio = onnx_options(threads, providers, where.get("audio"), fallback)
    llm = LLMOptions(n_ctx=ctx, threads=threads, device=llm_device, gpu_layers=layers)
    return RuntimeOptions(vision=vision, audio=audio, llm=llm, verbose=verbose)


def command_options(
    threads: int = 0,
    ctx: int = 0,
    providers: Sequence[str] = (),
    verbose: bool = False,
    devices: Sequence[str] = (),
    fallback: str = "cpu",
    gpu_layers: Optional[str] = None,
) -> RuntimeOptions:
    """What a command calls once: :func:`runtime_options`, with the log level of ``--verbose``
    set (:func:`setup_logging`)."""
    setup_logging(verbose)
    return runtime_options(threads, ctx, providers, verbose, devices, fallback, gpu_layers)


class _StderrHandler(logging.Handler):
    """Writes to whatever ``sys.stderr`` is at the time (tests swap it), as ``edge: level: message``."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(f"edge: {record.levelname.lower()}: {record.getMessage()}\n")
            sys.stderr.flush()
        except Exception:  # a closed stderr must not turn a log line into a crash
            self.handleError(record)


def setup_logging(verbose: bool = False) -> None:
    """Show the ``edge`` loggers on stderr: WARNING and above, INFO too with ``verbose``,
    everything with ``EDGE_DEBUG`` set. Idempotent (one handler, whatever the number of calls)."""
    logger = logging.getLogger(LOGGER)
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        logger.addHandler(_StderrHandler())
        logger.propagate = False  # the CLI's own format; no second copy through the root logger
    level = logging.DEBUG if os.environ.get("EDGE_DEBUG") else logging.INFO if verbose else logging.WARNING
    logger.setLevel(level)
