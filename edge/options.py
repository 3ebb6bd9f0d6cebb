"""Option types: frozen dataclasses built once at the edge (CLI, server, API) and passed down.

Every value is checked when the object is made, so a bad option is one clear
:class:`~edge.errors.InputError` before any work starts.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping, Optional, Sequence, Union

from edge.errors import InputError
from edge.speech_options import StreamOptions, TranscribeOptions  # noqa: F401  (every option type is here)


@dataclass(frozen=True)
class Budget:
    """Limits on one image's cost; None = the bundle's default."""

    max_tiles: Optional[int] = None
    max_image_tokens: Optional[int] = None
    # how many times an image may be enlarged along an axis (None: the scheme's own rule)
    max_upscale: Optional[float] = None

    def __post_init__(self) -> None:
        for name in ("max_tiles", "max_image_tokens"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise InputError(f"{name.replace('_', '-')} must be at least 1, got {value}")
        if self.max_upscale is not None and not self.max_upscale > 0:
            raise InputError(f"max-upscale must be positive, got {self.max_upscale}")


@dataclass(frozen=True)
class SamplingOptions:
    """How to pick each next token. ``temperature == 0`` means greedy (argmax)."""

    temperature: float = 0.0
    top_k: int = 40
    top_p: float = 0.95
    seed: Optional[int] = None

    def __post_init__(self) -> None:
        if not (0.0 <= self.temperature <= 100.0) or self.temperature != self.temperature:
            raise InputError(f"temperature must be between 0 and 100, got {self.temperature}")
        if self.top_k < 0:
            raise InputError(f"top-k must be 0 (off) or positive, got {self.top_k}")
        if not (0.0 < self.top_p <= 1.0):
            raise InputError(f"top-p must be in (0, 1], got {self.top_p}")
        if self.seed is not None and not (0 <= self.seed < 2**63):
            raise InputError(f"seed must be a non-negative integer, got {self.seed}")


# --- backends -----------------------------------------------------------------
# onnxruntime's provider names are always accepted; these short forms too (``--provider cuda``).
_PROVIDER_ALIASES: Mapping[str, str] = MappingProxyType(
    {
        "cpu": "CPUExecutionProvider",
        "cuda": "CUDAExecutionProvider",
        "tensorrt": "TensorrtExecutionProvider",
        "rocm": "ROCMExecutionProvider",
        "migraphx": "MIGraphXExecutionProvider",
        "openvino": "OpenVINOExecutionProvider",
        "dml": "DmlExecutionProvider",
        "coreml": "CoreMLExecutionProvider",
        "qnn": "QNNExecutionProvider",
        "nnapi": "NnapiExecutionProvider",
        "xnnpack": "XnnpackExecutionProvider",
        "webgpu": "WebGpuExecutionProvider",
        "azure": "AzureExecutionProvider",
    }
)
_MAX_THREADS = 1024
# where a component may run (``--device``); "auto" follows edge.runtime.devices' documented rule
DEVICES = ("auto", "cpu", "gpu", "npu")
# what happens to graph nodes the chosen device cannot run: "cpu" runs them there (named in a
# warning and the placement), "error" refuses the graph (naming the first unsupported operators)
FALLBACKS = ("cpu", "error")


def _check_choice(value: object, allowed: Sequence[str], what: str) -> str:
    if not isinstance(value, str) or value.strip().lower() not in allowed:
        raise InputError(f"unknown {what} {value!r} (use {', '.join(allowed)})")
    return value.strip().lower()


def _check_threads(threads: int) -> None:
    if not isinstance(threads, int) or not 0 <= threads <= _MAX_THREADS:
        raise InputError(f"threads must be 0 (auto) or 1 to {_MAX_THREADS}, got {threads}")


@dataclass(frozen=True)
class Provider:
    """An onnxruntime execution provider and its provider options, as onnxruntime names them.

    ``Provider("CUDAExecutionProvider", {"device_id": "1"})``. Values are passed to onnxruntime
    as strings (numbers are converted); which keys a provider knows is onnxruntime's business.
    """

    name: str
    options: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name or any(c.isspace() for c in self.name):
            raise InputError(f"an execution provider needs a name without spaces, got {self.name!r}")
        if not isinstance(self.options, Mapping):
            raise InputError(f"the options of {self.name} must be a mapping of names to values")
        clean: dict[str, str] = {}
        for key, value in self.options.items():
            if not isinstance(key, str) or not key.strip():
                raise InputError(f"{self.name}: provider option names must be non-empty strings, got {key!r}")
            if isinstance(value, bool) or not isinstance(value, (str, int, float)):
                raise InputError(f"{self.name}: provider option {key} must be a string or a number, got {value!r}")
            clean[key.strip()] = str(value)
        object.__setattr__(self, "options", clean)  # a private copy: the caller's dict may change later

    def __hash__(self) -> int:
        return hash((self.name, tuple(sorted(self.options.items()))))

    @classmethod
    def parse(cls, text: str) -> "Provider":
        """``NAME[:key=value,key=value...]`` (the CLI's ``--provider``). NAME is onnxruntime's name
        (``CUDAExecutionProvider``) or a short form (``cuda``, ``coreml``, ``qnn``, ``cpu``...)."""
        name, _, rest = text.strip().partition(":")
        name = name.strip()
        if not name:
            raise InputError(f"--provider needs a name (e.g. cuda or CUDAExecutionProvider), got {text!r}")
        name = _PROVIDER_ALIASES.get(name.lower(), name)
        if not name.endswith("ExecutionProvider"):
            raise InputError(
                f"unknown execution provider {name!r}: use onnxruntime's name (…ExecutionProvider) "
                f"or one of {', '.join(_PROVIDER_ALIASES)}"
            )
        options: dict[str, str] = {}
        for item in (p.strip() for p in rest.split(",")) if rest.strip() else ():
            key, eq, value = item.partition("=")
            if not eq or not key.strip():
                raise InputError(f"provider option {item!r} of {name} must be key=value")
            if key.strip() in options:
                raise InputError(f"provider option {key.strip()} of {name} is given twice")
            options[key.strip()] = value.strip()
        return cls(name, options)

    def as_dict(self) -> dict:
        """``{"name": ..., "options": {...}}`` for JSON output."""
        return {"name": self.name, "options": dict(self.options)}


CPU = Provider("CPUExecutionProvider")


@dataclass(frozen=True)
class OnnxOptions:
    """How onnxruntime runs one component's graphs (vision, or audio).

    ``threads``: intra-op threads (0 = auto: one per physical core). ``spinning``: whether idle
    worker threads spin waiting for work (onnxruntime's own default) or block (edge's default:
    as fast alone and faster beside a busy process, ``docs/threads.md``). ``providers``: the
    execution providers in order of preference; onnxruntime places each node on the first one
    that can run it. A provider this onnxruntime build lacks is an error when the graph is
    opened; one that is registered but gets fewer nodes than asked (a fallback) is reported:
    a warning on the ``edge.onnxruntime`` logger and the session's :class:`~edge.events.Placement`.
    Strings are accepted in ``providers`` and read with :meth:`Provider.parse`.

    ``device``: ``"cpu"``, ``"gpu"``, ``"npu"`` or ``"auto"`` picks the providers when the graph
    is opened (``edge.runtime.devices``; ``docs/devices.md``); None (the default) runs on
    ``providers`` as given. ``fallback``: ``"cpu"`` lets nodes the first provider cannot run
    go to the CPU (reported), ``"error"`` refuses such a graph, naming the first unsupported
    operators.
    """

    threads: int = 0
    providers: tuple[Provider, ...] = (CPU,)
    spinning: bool = False
    device: Optional[str] = None
    fallback: str = "cpu"

    def __post_init__(self) -> None:
        _check_threads(self.threads)
        if self.device is not None:
            object.__setattr__(self, "device", _check_choice(self.device, DEVICES, "device"))
        object.__setattr__(self, "fallback", _check_choice(self.fallback, FALLBACKS, "fallback"))
        if not isinstance(self.spinning, bool):
            raise InputError(f"spinning must be true or false, got {self.spinning!r}")
        if isinstance(self.providers, (str, Provider)) or not isinstance(self.providers, (tuple, list)):
            raise InputError("providers must be a sequence of execution providers")
        providers = tuple(Provider.parse(p) if isinstance(p, str) else p for p in self.providers)
        if not providers:
            raise InputError("at least one execution provider is needed (e.g. CPUExecutionProvider)")
        for p in providers:
            if not isinstance(p, Provider):
                raise InputError(f"an execution provider must be a Provider or a name, got {p!r}")
        names = [p.name for p in providers]
        dup = next((n for i, n in enumerate(names) if n in names[:i]), None)
        if dup:
            raise InputError(f"the execution provider {dup} is listed twice")
        if self.device is not None and names != [CPU.name]:
            raise InputError(f"give a device ({self.device}) or execution providers ({', '.join(names)}), not both")
        object.__setattr__(self, "providers", providers)

    @property
    def provider_names(self) -> tuple[str, ...]:
        """The providers' names, in order of preference."""
        return tuple(p.name for p in self.providers)


# the KV cache types LLMOptions.kv_dtype may name; "auto" follows the bundle (see LLMOptions)
KV_DTYPES = ("auto", "f16", "f32")


@dataclass(frozen=True)
class LLMOptions:
    """How llama.cpp runs the language model.

    ``n_ctx``: context size in tokens (0 = the model's training context, at most 4096).
    ``threads``: compute threads for decode and prefill (0 = auto: one per physical core less
    one, at least one; every core is faster on an idle machine, and collapses beside a busy
    process, ``docs/threads.md``). ``poll``: the polling level of llama.cpp's threadpool, 0 (a
    worker out of work sleeps at once, the default) to 100 (spins longest; llama.cpp's own
    default is 50); builds with OpenMP (``OPENMP = 1`` in ``edge doctor``) wait in OpenMP's
    barrier instead and ignore it. ``n_batch``: tokens (or embedding rows)
    per ``llama_decode`` call and llama.cpp's ubatch (512, as llama.cpp; docs/benchmarks.md has 256).
    ``kv_dtype``: the KV cache type: ``"f32"`` keeps the cache and
    attention in f32 (exact parity for f32 weights); ``"f16"`` halves KV memory and lets
    llama.cpp pick flash attention; ``"auto"`` (the default) is ``"f32"`` for a bundle whose
    LLM weights are f32 (as the manifest records them) and ``"f16"`` otherwise; see
    :meth:`kv_cache_dtype`.

    ``device``: ``"cpu"`` (the default), ``"gpu"`` (llama.cpp's GPU backend; an error without
    one) or ``"auto"`` (the GPU when llama.cpp has one, else the CPU). ``gpu_layers``: how many
    layers go to the GPU with ``gpu``/``auto`` (None = all).
    """

    n_ctx: int = 0
    threads: int = 0
    n_batch: int = 512
    kv_dtype: str = "auto"
    poll: int = 0
    device: str = "cpu"
    gpu_layers: Optional[int] = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "device", _check_choice(self.device, DEVICES, "LLM device"))
        if self.gpu_layers is not None and (
            not isinstance(self.gpu_layers, int) or isinstance(self.gpu_layers, bool) or self.gpu_layers < 0
        ):
            raise InputError(f"gpu layers must be a non-negative number (or auto), got {self.gpu_layers!r}")
        if self.gpu_layers and self.device == "cpu":
            raise InputError(f"{self.gpu_layers} GPU layers asked for, but the LLM device is cpu")
        if not isinstance(self.n_ctx, int) or self.n_ctx < 0 or (0 < self.n_ctx < 16):
            raise InputError(f"context size must be at least 16, got {self.n_ctx}")
        _check_threads(self.threads)
        if not isinstance(self.poll, int) or isinstance(self.poll, bool) or not 0 <= self.poll <= 100:
            raise InputError(f"poll must be between 0 (no polling) and 100 (aggressive), got {self.poll}")
        if not isinstance(self.n_batch, int) or self.n_batch < 1:
            raise InputError(f"batch size must be positive, got {self.n_batch}")
        if self.kv_dtype not in KV_DTYPES:
            raise InputError(f"KV cache dtype must be one of {', '.join(KV_DTYPES)}, got {self.kv_dtype!r}")

    def kv_cache_dtype(self, weights_dtype: str) -> str:
        """The KV cache type to use with LLM weights of ``weights_dtype`` (the manifest's
        ``llm.dtype``: f32, f16, q4_k_m...): ``kv_dtype`` itself unless it is ``"auto"``."""
        if self.kv_dtype != "auto":
            return self.kv_dtype
        return "f32" if weights_dtype == "f32" else "f16"


@dataclass(frozen=True)
class RuntimeOptions:
    """How to open a bundle: the backend options of each component, built once by the caller.

    ``vision`` and ``audio``: the onnxruntime options of the vision graph and the speech graphs;
    ``llm``: the llama.cpp options. ``verbose``: echo llama.cpp's own log to stderr as it comes.
    onnxruntime's messages always go to the ``edge.onnxruntime`` logger (``edge --verbose``
    shows them). :meth:`simple` makes the common case: the same threads everywhere.
    """

    vision: OnnxOptions = field(default_factory=OnnxOptions)
    audio: OnnxOptions = field(default_factory=OnnxOptions)
    llm: LLMOptions = field(default_factory=LLMOptions)
    verbose: bool = False
    one_shot: bool = False  # `edge run`: images first, vision session freed, then the LLM (docs/performance.md)

    def __post_init__(self) -> None:
        for name, kind in (("vision", OnnxOptions), ("audio", OnnxOptions), ("llm", LLMOptions)):
            if not isinstance(getattr(self, name), kind):
                got = type(getattr(self, name)).__name__
                raise InputError(f"RuntimeOptions.{name} must be {kind.__name__}, got {got}")
        for flag in ("verbose", "one_shot"):
            if not isinstance(getattr(self, flag), bool):
                raise InputError(f"{flag} must be true or false, got {getattr(self, flag)!r}")

    @classmethod
    def simple(
        cls, threads: int = 0, n_ctx: int = 0, providers: Sequence[Union[Provider, str]] = (CPU,), verbose: bool = False
    ) -> "RuntimeOptions":
        """The same ``threads`` for every component (0 = each component's auto rule), the LLM's
        context size ``n_ctx`` (0 = the model's, at most 4096) and the execution ``providers`` of
        the vision and audio graphs; every other option at its default."""
        onnx = OnnxOptions(threads=threads, providers=tuple(providers))
        return cls(vision=onnx, audio=onnx, llm=LLMOptions(n_ctx=n_ctx, threads=threads), verbose=verbose)


@dataclass(frozen=True)
class GenerateOptions:
    """One request: token limit, sampling, and whether to apply the chat template.

    ``stop``: stop sequences (strings); the answer ends before the first one that appears, the
    stream never shows text past it, and the finish reason is ``"stop"``.
    """

    max_tokens: int = 256
    sampling: SamplingOptions = field(default_factory=SamplingOptions)
    template: bool = True
    system: Optional[str] = None
    budget: Budget = field(default_factory=Budget)
    stop: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not 1 <= self.max_tokens <= 1_000_000:
            raise InputError(f"max tokens must be between 1 and 1000000, got {self.max_tokens}")
        if not isinstance(self.stop, (tuple, list)) or not all(isinstance(s, str) and s for s in self.stop):
            raise InputError("stop sequences must be a list of non-empty strings")
        object.__setattr__(self, "stop", tuple(self.stop))


@dataclass(frozen=True)
class ExportOptions:
    """What to export and how: weight dtype, threads (torch, and the backends' default), overwrite.

    ``runtime``: the backends of the parity run at the end of the export (onnxruntime for the
    graphs, llama.cpp for the LLM); None = :meth:`RuntimeOptions.simple` with ``threads``.
    """

    dtype: str = "f16"
    threads: int = 0
    force: bool = False
    name: Optional[str] = None
    runtime: Optional[RuntimeOptions] = None
    mmproj: bool = True  # also write llama.cpp's mmproj GGUF of the vision tower (edge.export.mmproj)

    def __post_init__(self) -> None:
        if self.dtype not in ("f32", "f16"):
            raise InputError(f"--dtype must be f32 or f16, got {self.dtype!r}")
        _check_threads(self.threads)
        if self.runtime is None:
            object.__setattr__(self, "runtime", RuntimeOptions.simple(threads=self.threads))
        elif not isinstance(self.runtime, RuntimeOptions):
            raise InputError(f"ExportOptions.runtime must be RuntimeOptions, got {type(self.runtime).__name__}")


# The tiles the runtime's own scheme may make of each probe image, for calibration and the
# quick fidelity measurement (the global/base image plus a 2x2 grid at most): keeps them bounded.
PROBE_BUDGET = Budget(max_tiles=5)
# "quick": the first QUICK_PROBE_IMAGES generated images (and the user's), every one of them, in
# the answers too, under QuantizeOptions.budget; "full": every generated image, with all the tiles
# the runtime makes of it for a user (no budget).
FIDELITY_MODES = ("quick", "full")
QUICK_PROBE_IMAGES = 4


@dataclass(frozen=True)
class QuantizeOptions:
    """Threads (0 = auto), overwrite, the images added to the generated probe set, the tile budget
    of each probe image (the runtime's own scheme makes the tiles of calibration and fidelity),
    and how thorough the fidelity measurement is (``fidelity``: see :data:`FIDELITY_MODES`;
    calibration always uses every generated image under ``budget``).

    ``threads`` is llama.cpp's quantizer's; ``runtime`` is how both bundles run for the fidelity
    measurement (None = :meth:`RuntimeOptions.simple` with ``threads``).
    """

    threads: int = 0
    force: bool = False
    # image files added to the generated ones (calibration and vision fidelity)
    images: tuple[Union[str, os.PathLike], ...] = ()
    generated_images: int = 12
    name: Optional[str] = None
    budget: Budget = PROBE_BUDGET
    runtime: Optional[RuntimeOptions] = None
    fidelity: str = "quick"

    def __post_init__(self) -> None:
        _check_threads(self.threads)
        if self.fidelity not in FIDELITY_MODES:
            raise InputError(f"fidelity must be {' or '.join(FIDELITY_MODES)}, got {self.fidelity!r}")
        if self.runtime is None:
            object.__setattr__(self, "runtime", RuntimeOptions.simple(threads=self.threads))
        elif not isinstance(self.runtime, RuntimeOptions):
            raise InputError(f"QuantizeOptions.runtime must be RuntimeOptions, got {type(self.runtime).__name__}")
        if not 1 <= self.generated_images <= 256:
            raise InputError(f"generated images must be between 1 and 256, got {self.generated_images}")

    def fidelity_probes(self) -> tuple[int, Budget]:
        """How many generated images the fidelity measurement uses, and the tile budget of each."""
        if self.fidelity == "full":
            return self.generated_images, Budget()
        return min(self.generated_images, QUICK_PROBE_IMAGES), self.budget
