"""Which device each component runs on: the ``--device`` names, the documented ``auto`` rule,
and the llama.cpp side's placement. Pure functions over facts the backends report.

The facts (execution providers, the hardware onnxruntime sees, llama.cpp's GPU devices) come
from :mod:`edge.runtime.onnx_backend` and :mod:`edge.runtime.llama_backend`; nothing here
imports a backend library, so the rule is unit-tested on made-up machines.

The ``auto`` rule (``docs/devices.md``), per component:

- an ONNX graph quantized as static QDQ (``qdq-int8``, the ``npu-*`` recipes) goes to an NPU
  execution provider whose device onnxruntime reports as an NPU (a phone's or a laptop's
  Hexagon), opened with CPU fallback *off*: a graph the NPU cannot take whole is refused and
  the component runs on the CPU instead, the reason in its placement. The QNN HTP *emulator*
  (``onnxruntime-qnn`` on x86-64) is listed by ``edge doctor`` but never picked by ``auto``: its
  numerics are the NPU's, its speed is not;
- an f32/f16 graph goes to a GPU execution provider (CUDA, DirectML, CoreML, ROCm, MIGraphX,
  WebGPU, in that order) when onnxruntime has one, with CPU fallback on (GPU providers leave
  shape ops on the CPU on purpose) and any fallback named in the placement;
- everything else runs on the CPU;
- the LLM goes to llama.cpp's GPU (every layer offloaded) when the llama.cpp build has a GPU
  backend with a device, else the CPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping, Optional, Sequence

from edge.errors import InputError
from edge.options import DEVICES, FALLBACKS

CPU_EP = "CPUExecutionProvider"
# onnxruntime's GPU execution providers, in the order ``gpu``/``auto`` prefer them
GPU_EPS = (
    "CUDAExecutionProvider",
    "DmlExecutionProvider",
    "CoreMLExecutionProvider",
    "ROCMExecutionProvider",
    "MIGraphXExecutionProvider",
    "WebGpuExecutionProvider",
)
# NPU execution providers (QNN: Qualcomm Hexagon HTP)
NPU_EPS = ("QNNExecutionProvider",)
# graph dtypes an NPU takes (static QDQ); others are float graphs for CPU/GPU
NPU_DTYPES = ("qdq-int8",)
FLOAT_DTYPES = ("f32", "f16")
# what to install for each device (also the message of a device that is not there)
INSTALL: Mapping[str, str] = MappingProxyType(
    {
        "gpu": (
            "pip install onnxruntime-gpu (NVIDIA CUDA) or onnxruntime-directml (Windows) in place of onnxruntime; "
            "CoreML is in onnxruntime's macOS wheel"
        ),
        "npu": "pip install 'edge-mllm[npu]' (onnxruntime-qnn: Qualcomm HTP; Linux x86-64 emulator or Windows on ARM)",
        "llm-gpu": (
            "reinstall llama-cpp-python with a GPU backend, e.g. "
            'CMAKE_ARGS="-DGGML_CUDA=on" pip install --force-reinstall --no-cache-dir llama-cpp-python '
            "(docs/devices.md)"
        ),
    }
)


def check_device(name: str, what: str = "--device") -> str:
    """``name`` lower-cased if it is one of :data:`DEVICES`, else an :class:`InputError`."""
    value = str(name).strip().lower()
    if value not in DEVICES:
        raise InputError(f"unknown {what} {name!r} (devices: {', '.join(DEVICES)})")
    return value


def check_fallback(name: str) -> str:
    """``name`` if it is one of :data:`FALLBACKS`, else an :class:`InputError`."""
    value = str(name).strip().lower()
    if value not in FALLBACKS:
        raise InputError(f"unknown --fallback {name!r} (use cpu or error)")
    return value


@dataclass(frozen=True)
class EpDevice:
    """A device onnxruntime can run an execution provider on (``onnxruntime.get_ep_devices``).

    ``kind``: ``"CPU"``, ``"GPU"`` or ``"NPU"`` as onnxruntime reports the hardware; the QNN HTP
    emulator on x86-64 reports ``"CPU"`` (it runs on the host), which is how it is told apart.
    """

    provider: str
    kind: str
    vendor: str = ""
    plugin: str = ""  # the Python package of a plugin execution provider ("onnxruntime_qnn"), if any

    @property
    def emulated_npu(self) -> bool:
        """An NPU provider running on the host CPU (the QNN HTP emulator)."""
        return self.provider in NPU_EPS and self.kind != "NPU"

    def as_dict(self) -> dict:
        """Plain JSON-able form (for ``edge doctor --json``)."""
        return {"provider": self.provider, "kind": self.kind, "vendor": self.vendor, "emulated": self.emulated_npu}


@dataclass(frozen=True)
class Choice:
    """Where one ONNX graph goes: the device name, its execution providers in order, whether CPU
    fallback is off (``strict``), and why (the rule's words, shown in ``placement``)."""

    device: str
    providers: tuple[str, ...]
    strict: bool
    reason: str
    # the CPU choice ``auto`` takes when a strict NPU session is refused
    otherwise: Optional["Choice"] = None


def onnx_choice(
    device: str, dtype: str, available: Sequence[str], hardware: Sequence[EpDevice], fallback: str = "cpu"
) -> Choice:
    """The execution providers for a graph of ``dtype`` (the manifest's ``dtype``) on ``device``.

    ``available``: onnxruntime's providers (plugins included once registered); ``hardware``: the
    devices it reports. ``fallback`` ``"error"`` makes every choice strict. Raises
    :class:`InputError` for a device that is not there, naming what to install.
    """
    device = check_device(device)
    strict = check_fallback(fallback) == "error"
    cpu = Choice("cpu", (CPU_EP,), strict, "asked for" if device == "cpu" else "")
    npu = [p for p in NPU_EPS if p in available or any(h.provider == p for h in hardware)]
    gpu = [p for p in GPU_EPS if p in available]
    if device == "cpu":
        return cpu
    if device == "npu":
        if not npu:
            raise InputError(f"no NPU execution provider here: {INSTALL['npu']}")
        emulated = all(h.emulated_npu for h in hardware if h.provider == npu[0]) and any(
            h.provider == npu[0] for h in hardware
        )
        note = " (the HTP emulator: the NPU's operators and numerics, not its speed)" if emulated else ""
        return Choice("npu", (npu[0], CPU_EP), strict, f"asked for{note}")
    if device == "gpu":
        if not gpu:
            raise InputError(f"no GPU execution provider in this onnxruntime (has {', '.join(available)}): "
                             f"{INSTALL['gpu']}")  # fmt: skip
        return Choice("gpu", (gpu[0], CPU_EP), strict, "asked for")
    # auto
    real_npu = [h for h in hardware if h.provider in NPU_EPS and h.kind == "NPU"]
    if dtype in NPU_DTYPES and real_npu:
        why = f"a static QDQ graph and an NPU ({real_npu[0].provider}); refused whole -> CPU"
        fallback_cpu = Choice("cpu", (CPU_EP,), strict, "auto: the NPU refused the graph whole")
        return Choice("npu", (real_npu[0].provider, CPU_EP), True, f"auto: {why}", fallback_cpu)
    if dtype in FLOAT_DTYPES and gpu:
        return Choice("gpu", (gpu[0], CPU_EP), strict, f"auto: a {dtype} graph and a GPU provider ({gpu[0]})")
    if dtype in NPU_DTYPES and any(h.emulated_npu for h in hardware):
        why = "auto: only the HTP emulator is here (never chosen automatically)"
    elif dtype in NPU_DTYPES:
        why = "auto: no NPU found"
    elif gpu:
        why = f"auto: a {dtype} graph stays off the GPU"
    else:
        why = "auto: no GPU or NPU execution provider found"
    return Choice("cpu", (CPU_EP,), strict, why)


@dataclass(frozen=True)
class LLMPlacement:
    """Where the LLM runs: llama.cpp's backend, how many of its layers are offloaded to a GPU,
    and why (``as_dict`` is the ``llm`` entry of ``placement`` in ``--json``)."""

    device: str
    backend: str
    gpu_layers: int
    n_layers: int
    reason: str = ""

    @property
    def fallback(self) -> bool:
        """llama.cpp never moves work on its own: nothing to report."""
        return False

    def as_dict(self) -> dict:
        """Plain JSON-able form."""
        return {
            "device": self.device,
            "backend": self.backend,
            "gpu_layers": self.gpu_layers,
            "n_layers": self.n_layers,
            "reason": self.reason,
        }


def llm_layers(device: str, gpu_layers: Optional[int], gpu_devices: Sequence[str], n_layers: int) -> tuple[int, str]:
    """llama.cpp's ``n_gpu_layers`` for the LLM and the reason, from ``device``, the
    ``gpu_layers`` option (None = auto: all when there is a GPU) and llama.cpp's GPU devices.

    Raises :class:`InputError` for a GPU that llama.cpp does not have, or the NPU (llama.cpp here
    has no NPU backend: a phone runs the LLM on its CPU).
    """
    device = check_device(device, "LLM device")
    if device == "npu":
        raise InputError("llama.cpp has no NPU backend: run the LLM on cpu (or gpu), e.g. --llm-device cpu")
    if device == "cpu":
        if gpu_layers:
            raise InputError("--gpu-layers needs --device gpu or auto for the LLM (it runs on the cpu)")
        return 0, "asked for"
    if not gpu_devices:
        if device == "gpu" or gpu_layers:
            raise InputError(f"llama.cpp here has no GPU backend: {INSTALL['llm-gpu']}")
        return 0, "auto: llama.cpp has no GPU backend here"
    layers = n_layers if gpu_layers is None or gpu_layers < 0 else min(gpu_layers, n_layers)
    lead = "asked for" if device == "gpu" else "auto"
    return layers, f"{lead}: {layers} of {n_layers} layers on {gpu_devices[0]}"
