"""The language model on llama.cpp, through llama-cpp-python's low-level C API.

This is the only module that imports ``llama_cpp``. Text goes in as token ids
(``llama_batch.token``) and images as embedding rows (``llama_batch.embd``), both
at explicit positions of sequence 0; the KV cache persists between calls so a
chat only evaluates what is new.

Over 400 lines on purpose: house rule 3 keeps every call into llama.cpp in this one module
(model, context, batches, positions, attention mode, threadpool, log hook, quantizer).
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import logging
import os
import re
import sys
import threading
from pathlib import Path
from types import MappingProxyType, SimpleNamespace
from typing import Callable, Iterator, Mapping, Optional

import llama_cpp as lc
import numpy as np

from edge.errors import ContextOverflowError, InputError, RuntimeFailure
from edge.options import LLMOptions
from edge.runtime.cpu import llm_threads
from edge.runtime.devices import LLMPlacement, llm_layers

_GGML_TYPE_F32 = 0  # ggml_type enum value
_GGML_MAX_N_THREADS = 512  # GGML_MAX_N_THREADS of ggml.h
LOG = logging.getLogger("edge.llama_cpp")


class ThreadpoolParams(ctypes.Structure):
    """``struct ggml_threadpool_params`` of ggml.h (the llama.cpp llama-cpp-python 0.3.36 vendors),
    which llama-cpp-python does not bind; :func:`_threadpool_api` checks this layout against the
    library's own ``ggml_threadpool_params_default`` before any pool is made."""

    _fields_ = [
        ("cpumask", ctypes.c_bool * _GGML_MAX_N_THREADS),  # all false: the inherited affinity
        ("n_threads", ctypes.c_int),
        ("prio", ctypes.c_int),  # enum ggml_sched_priority: 0 = normal
        ("poll", ctypes.c_uint32),  # 0 = sleep at once when out of work ... 100 = spin longest
        ("strict_cpu", ctypes.c_bool),
        ("paused", ctypes.c_bool),
    ]


def _threadpool_api() -> Optional[SimpleNamespace]:
    """ggml's threadpool functions from the wheel's own libraries (already loaded by libllama),
    or None (with a warning) when they are missing or the struct layout does not match."""
    llama = lc.llama_cpp._lib
    try:
        folder = Path(llama._name).parent
        names = [f"libggml-cpu{s}" for s in (".so", ".dylib")] + ["ggml-cpu.dll"]
        cpu = ctypes.CDLL(str(next(folder / n for n in names if (folder / n).exists())))
        base = ctypes.CDLL(str(next(folder / n.replace("-cpu", "-base") for n in names if (folder / n).exists())))
        api = SimpleNamespace(new=cpu.ggml_threadpool_new, free=cpu.ggml_threadpool_free)
        api.attach, api.detach = llama.llama_attach_threadpool, llama.llama_detach_threadpool
        api.match = base.ggml_threadpool_params_match
        default = base.ggml_threadpool_params_default
    except (StopIteration, OSError, AttributeError) as exc:
        LOG.warning("llama.cpp's threadpool API is not available (%s); using its default threads", exc)
        return None
    default.restype, default.argtypes = ThreadpoolParams, [ctypes.c_int]
    api.new.restype, api.new.argtypes = ctypes.c_void_p, [ctypes.POINTER(ThreadpoolParams)]
    api.free.restype, api.free.argtypes = None, [ctypes.c_void_p]
    api.attach.restype, api.attach.argtypes = None, [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
    api.detach.restype, api.detach.argtypes = None, [ctypes.c_void_p]
    api.match.restype = ctypes.c_bool
    api.match.argtypes = [ctypes.POINTER(ThreadpoolParams), ctypes.POINTER(ThreadpoolParams)]
    ours, theirs = ThreadpoolParams(n_threads=3, poll=50), default(3)  # ggml_threadpool_params_init's values
    if not (theirs.n_threads == 3 and theirs.poll == 50 and api.match(ctypes.byref(ours), ctypes.byref(theirs))):
        LOG.warning("ggml_threadpool_params does not have the layout edge knows; using llama.cpp's default threads")
        return None
    return api


class LogSink:
    """Where llama.cpp's log goes while one object's call runs: the recent lines (for error
    messages), an echo to stderr (``verbose``), and an optional ``listener`` called with each
    piece of text (``quantize_gguf`` reads its progress from it).

    llama.cpp's log hook is process-global in C, so a sink is installed only for the duration
    of a call into llama.cpp (:meth:`active`) and the quiet default is restored after it.
    """

    def __init__(self, verbose: bool = False, listener: Optional[Callable[[str], None]] = None, keep: int = 20) -> None:
        self.verbose = verbose
        self.listener = listener
        self.recent: collections.deque[str] = collections.deque(maxlen=keep)

    def write(self, level: int, text: str) -> None:
        """Take one piece of llama.cpp's log (often a whole line, sometimes a fragment)."""
        self.recent.append(text.strip())
        if self.listener is not None:
            self.listener(text)
        if self.verbose:
            sys.stderr.write(text)

    def last_error(self) -> str:
        """The last non-empty line llama.cpp logged (what failed, usually), or "no details"."""
        lines = [line for line in self.recent if line]
        return lines[-1] if lines else "no details"

    @contextlib.contextmanager
    def active(self) -> Iterator["LogSink"]:
        """Route llama.cpp's log here for the ``with`` body, then back to the quiet default.

        The C side keeps only this object's address; the ``with`` body holds a reference, and
        the address is cleared before the body's frame can let the object go.
        """
        lc.llama_log_set(_LOG_CALLBACK, ctypes.c_void_p(id(self)))
        try:
            yield self
        finally:
            lc.llama_log_set(_LOG_CALLBACK, ctypes.c_void_p(0))


def _dispatch(level: int, text: bytes, user_data: Optional[int]) -> None:
    # llama.cpp calls this for every log piece: to the installed sink, or nowhere (quiet default)
    if not user_data:
        return
    try:
        sink = ctypes.cast(user_data, ctypes.py_object).value
        sink.write(int(level), text.decode("utf-8", errors="replace") if text else "")
    except Exception:  # nothing may propagate into C; a broken listener only loses log lines
        pass


# One immutable C callback for the whole process: the sink is chosen by the user_data pointer.
_LOG_CALLBACK = lc.llama_log_callback(_dispatch)


def active_log_sink() -> Optional[LogSink]:
    """The sink llama.cpp's log goes to right now: None between calls (the quiet default)."""
    callback, user_data = lc.llama_log_callback(), ctypes.c_void_p()
    lc.llama_log_get(ctypes.byref(callback), ctypes.byref(user_data))
    ours = ctypes.cast(callback, ctypes.c_void_p).value == ctypes.cast(_LOG_CALLBACK, ctypes.c_void_p).value
    if not (ours and user_data.value):
        return None
    return ctypes.cast(user_data.value, ctypes.py_object).value


def system_info() -> str:
    """llama.cpp's build and CPU feature line (for ``edge doctor``)."""
    return lc.llama_print_system_info().decode("utf-8", errors="replace").strip()


def backend_version() -> str:
    """The llama-cpp-python version."""
    return lc.__version__


# ggml_backend_dev_type (ggml-backend.h), by value
_DEV_TYPES = ("CPU", "GPU", "IGPU", "ACCEL", "META")


def backend_devices() -> list[dict]:
    """The devices of llama.cpp's ggml backends (``ggml_backend_dev_*``, from the wheel's
    libggml): name, description and type (CPU, GPU, IGPU, ACCEL); [] when the library does
    not export them."""
    try:
        folder = Path(lc.llama_cpp._lib._name).parent
        lib = ctypes.CDLL(str(next(p for p in sorted(folder.glob("*ggml*")) if p.name.split(".")[0] in (
            "libggml", "ggml"))))  # fmt: skip
        count, get = lib.ggml_backend_dev_count, lib.ggml_backend_dev_get
        name, desc, kind = lib.ggml_backend_dev_name, lib.ggml_backend_dev_description, lib.ggml_backend_dev_type
    except (StopIteration, OSError, AttributeError):
        return []
    count.restype, get.restype, get.argtypes = ctypes.c_size_t, ctypes.c_void_p, [ctypes.c_size_t]
    for fn in (name, desc):
        fn.restype, fn.argtypes = ctypes.c_char_p, [ctypes.c_void_p]
    kind.restype, kind.argtypes = ctypes.c_int, [ctypes.c_void_p]
    out = []
    for i in range(int(count())):
        dev = get(i)
        t = int(kind(dev))
        out.append(
            {
                "name": (name(dev) or b"").decode(errors="replace"),
                "description": (desc(dev) or b"").decode(errors="replace"),
                "type": _DEV_TYPES[t] if 0 <= t < len(_DEV_TYPES) else str(t),
            }
        )
    return out


def gpu_devices() -> list[dict]:
    """llama.cpp's GPU devices (discrete or integrated) that layers can be offloaded to."""
    if not lc.llama_supports_gpu_offload():
        return []
    return [d for d in backend_devices() if d["type"] in ("GPU", "IGPU")]


# llama.cpp's quantization types, by the names its ``llama-quantize`` tool uses (``llama_ftype``).
GGUF_QUANT_TYPES: Mapping[str, int] = MappingProxyType(
    {
        "Q8_0": lc.LLAMA_FTYPE_MOSTLY_Q8_0,
        "Q6_K": lc.LLAMA_FTYPE_MOSTLY_Q6_K,
        "Q5_K_M": lc.LLAMA_FTYPE_MOSTLY_Q5_K_M,
        "Q5_K_S": lc.LLAMA_FTYPE_MOSTLY_Q5_K_S,
        "Q5_0": lc.LLAMA_FTYPE_MOSTLY_Q5_0,
        "Q4_K_M": lc.LLAMA_FTYPE_MOSTLY_Q4_K_M,
        "Q4_K_S": lc.LLAMA_FTYPE_MOSTLY_Q4_K_S,
        "Q4_0": lc.LLAMA_FTYPE_MOSTLY_Q4_0,
        "Q3_K_M": lc.LLAMA_FTYPE_MOSTLY_Q3_K_M,
        "Q2_K": lc.LLAMA_FTYPE_MOSTLY_Q2_K,
    }
)
# llama_model_quantize logs one "[  12/ 272] name ..." line per tensor it writes
_TENSOR_LINE = re.compile(r"\[\s*(\d+)/\s*(\d+)\]")


def quantize_gguf(
    src: Path, dst: Path, ftype: str, threads: int = 0, progress: Optional[Callable[[int, int], None]] = None
) -> None:
    """Quantize the GGUF ``src`` into ``dst`` with llama.cpp's own quantizer (``llama_model_quantize``).

    ``ftype`` names a type of :data:`GGUF_QUANT_TYPES`. llama.cpp picks each tensor's type
    itself (the ``_M`` mixes keep some tensors at higher precision; rows whose width does not
    fit a 256-wide k-quant block fall back to a 32-wide type, e.g. Q4_K -> Q5_0). 1-D tensors
    stay f32. ``progress(done, total)`` reports the tensors written so far.

    The C call cannot be cancelled, so it runs in a daemon thread while this thread waits:
    Ctrl-C (or an exception raised by ``progress``) returns at once and leaves the thread to
    finish writing ``dst``, which the caller then discards.

    Raises:
        InputError: an unknown ``ftype``.
        RuntimeFailure: llama.cpp refused the file (its last log line says why).
    """
    if ftype not in GGUF_QUANT_TYPES:
        raise InputError(f"unknown GGUF quantization {ftype!r} (known: {', '.join(GGUF_QUANT_TYPES)})")
    params = lc.llama_model_quantize_default_params()
    params.nthread = threads or max(1, os.cpu_count() or 1)
    params.ftype = GGUF_QUANT_TYPES[ftype]
    state = {"done": 0, "total": 0, "rc": None}

    def listen(text: str) -> None:
        match = _TENSOR_LINE.search(text)
        if match:
            state["done"], state["total"] = int(match.group(1)), int(match.group(2))

    # this call's own sink; the worker holds it (and installs it) for as long as llama.cpp writes
    sink = LogSink(listener=listen)

    def work() -> None:
        with sink.active():
            lc.llama_backend_init()
            state["rc"] = int(lc.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params)))

    worker = threading.Thread(target=work, name="llama-quantize", daemon=True)
    worker.start()
    alive = True
    while alive:
        worker.join(0.1)
        alive = worker.is_alive()
        if progress is not None:
            progress(state["done"], state["total"])
    if state["rc"] != 0:
        raise RuntimeFailure(f"llama.cpp cannot quantize {Path(src).name} to {ftype}: {sink.last_error()}")


def _view(pointer, count: int) -> np.ndarray:
    """A numpy view of ``count`` elements of a ``llama_batch`` array (``POINTER(c_int32)`` / ``c_int8``)."""
    return np.ctypeslib.as_array(pointer, shape=(count,))


class LLM:
    """One llama.cpp model and context with a single sequence and a position counter.

    ``weights_dtype`` is the weights' type as the bundle's manifest records it (``llm.dtype``);
    it resolves ``options.kv_dtype == "auto"`` (:meth:`LLMOptions.kv_cache_dtype`). ``verbose``
    echoes llama.cpp's log to stderr. Each object keeps its own log lines (:attr:`log`), which
    end the messages of its errors.
    """

    def __init__(
        self,
        path: Path,
        options: LLMOptions = LLMOptions(),
        default_ctx: int = 4096,
        weights_dtype: str = "f16",
        verbose: bool = False,
    ) -> None:
        self._model = self._ctx = None
        self.log = LogSink(verbose)
        with self.log.active():
            self._open(Path(path), options, default_ctx, options.kv_cache_dtype(weights_dtype))

    def _open(self, path: Path, options: LLMOptions, default_ctx: int, kv_dtype: str) -> None:
        lc.llama_backend_init()
        mparams = lc.llama_model_default_params()
        # ggml's AMX matmul kernels (an "extra buffer type") segfault on quantized
        # weights on the AMX machines we test on (ggml_backend_amx_mul_mat), which
        # no caller could catch; keep weights in plain CPU buffers on such builds.
        mparams.use_extra_bufts = "AMX_INT8 = 1" not in system_info()
        # the device rule (edge.runtime.devices.llm_layers) before loading: layers are placed at load
        gpus = [d["name"] for d in gpu_devices()]
        mparams.n_gpu_layers, _ = llm_layers(options.device, options.gpu_layers, gpus, 1 << 30)
        self._model = lc.llama_model_load_from_file(str(path).encode(), mparams)
        if not self._model:
            raise RuntimeFailure(f"llama.cpp cannot load {path}: {self.log.last_error()}")
        n_layer = int(lc.llama_model_n_layer(self._model))
        layers, why = llm_layers(options.device, options.gpu_layers, gpus, n_layer)
        device = "gpu" if layers else "cpu"
        self.placement = LLMPlacement(device, gpus[0] if layers else "CPU", layers, n_layer, why)
        self._vocab = lc.llama_model_get_vocab(self._model)
        self.n_embd = int(lc.llama_model_n_embd(self._model))
        self.n_vocab = int(lc.llama_vocab_n_tokens(self._vocab))
        n_train = int(lc.llama_model_n_ctx_train(self._model))
        cparams = lc.llama_context_default_params()
        cparams.n_ctx = options.n_ctx or min(n_train, default_ctx)
        cparams.n_batch = cparams.n_ubatch = options.n_batch
        # llama.cpp's own default (4) oversubscribes small machines; 0 = edge's rule (docs/threads.md)
        self.threads = options.threads or llm_threads()
        cparams.n_threads = cparams.n_threads_batch = self.threads
        cparams.no_perf = True
        self.kv_dtype = kv_dtype
        if kv_dtype == "f32":
            cparams.type_k = cparams.type_v = _GGML_TYPE_F32
            cparams.flash_attn_type = lc.LLAMA_FLASH_ATTN_TYPE_DISABLED
        self._ctx = lc.llama_init_from_model(self._model, cparams)
        if not self._ctx:
            lc.llama_model_free(self._model)
            self._model = None
            raise RuntimeFailure(f"llama.cpp cannot create a context: {self.log.last_error()}")
        self._attach_threadpool(options.poll)
        self.n_ctx = int(lc.llama_n_ctx(self._ctx))
        self.n_batch = options.n_batch
        self.n_past = 0

    def _attach_threadpool(self, poll: int) -> None:
        # One ggml threadpool for decode and prefill, made with our polling level (llama.cpp's
        # implicit pool polls at 50). Builds with OpenMP (OPENMP = 1 in system_info, e.g. Linux
        # wheels) compute in OpenMP threads and ignore ``poll``; docs/threads.md has the figures.
        self._pool, self._pool_api = None, _threadpool_api()
        if self._pool_api is not None:
            params = ThreadpoolParams(n_threads=self.threads, poll=poll)
            self._pool = self._pool_api.new(ctypes.byref(params))
            if self._pool:
                self._pool_api.attach(self._ctx, self._pool, self._pool)

    # --- tokens -----------------------------------------------------------------
    def tokenize(self, text: str, add_bos: bool = False, special: bool = True) -> list[int]:
        """Token ids of ``text``; ``special`` parses control tokens written as text."""
        data = text.encode("utf-8")
        cap = len(data) + 8
        buf = (lc.llama_token * cap)()
        n = lc.llama_tokenize(self._vocab, data, len(data), buf, cap, add_bos, special)
        if n < 0:
            cap = -n
            buf = (lc.llama_token * cap)()
            n = lc.llama_tokenize(self._vocab, data, len(data), buf, cap, add_bos, special)
        if n < 0:
            raise RuntimeFailure("llama.cpp failed to tokenize the prompt")
        return list(buf[:n])

    def piece(self, token: int) -> bytes:
        """The bytes a token stands for (control tokens render as nothing)."""
        buf = ctypes.create_string_buffer(64)
        n = lc.llama_token_to_piece(self._vocab, token, buf, len(buf), 0, False)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = lc.llama_token_to_piece(self._vocab, token, buf, len(buf), 0, False)
        return buf.raw[: max(n, 0)]

    # --- evaluation -------------------------------------------------------------
    def eval_tokens(self, ids: list[int], all_logits: bool = False) -> Optional[np.ndarray]:
        """Append token ids at the current position; return logits of the last (or every) one."""
        for t in ids:
            if not 0 <= t < self.n_vocab:
                raise InputError(f"token id {t} is outside the vocabulary (0..{self.n_vocab - 1})")
        return self._eval(len(ids), all_logits, tokens=ids)

    def eval_embeddings(
        self, embd: np.ndarray, all_logits: bool = False, causal: bool = True, positions: Optional[np.ndarray] = None
    ) -> Optional[np.ndarray]:
        """Append embedding rows ``[n, n_embd]`` (an image) at the current position.

        ``positions``: M-RoPE models (``qwen2vl``) take ``[3, n]`` (t, h, w) position ids of the
        rows relative to the current position; they go to llama.cpp section-major, four values a
        row (t, h, w, 0: ``llama_batch_ext`` reads ``pos[j * n_tokens + i]`` for embedding batches,
        as libmtmd's ``set_position_mrope_2d`` writes them), and the position counter then
        advances by the ids' span (largest + 1), not by the rows.

        ``causal=False``: the rows attend to each other both ways (and to everything before
        them), as Gemma 3 sees an image; they are decoded in one ubatch with llama.cpp's
        causal attention off, as libmtmd does (``mtmd-helper.cpp``, ``scope_non_causal``).
        """
        embd = np.ascontiguousarray(embd, dtype=np.float32)
        if embd.ndim != 2 or embd.shape[1] != self.n_embd:
            raise RuntimeFailure(f"embeddings of shape {tuple(embd.shape)} do not fit this LLM (n_embd={self.n_embd})")
        if positions is not None:
            positions = np.asarray(positions)
            if positions.shape != (3, embd.shape[0]) or positions.min(initial=0) < 0:
                raise RuntimeFailure(f"M-RoPE positions of shape {positions.shape} do not fit {embd.shape[0]} rows")
        return self._eval(embd.shape[0], all_logits, embd=embd, causal=causal, mrope=positions)

    def _eval(
        self, n: int, all_logits: bool, tokens=None, embd=None, causal: bool = True, mrope=None
    ) -> Optional[np.ndarray]:
        if n == 0:
            return None
        if self.n_past + n > self.n_ctx:
            raise ContextOverflowError(
                f"the prompt needs {self.n_past + n} positions but the context holds {self.n_ctx} "
                "(shorten the prompt, use fewer images or raise --ctx)"
            )
        if not causal and n > self.n_batch:
            # a block split over ubatches would let its first part miss the rest: refuse, never approximate
            raise InputError(
                f"an image block of {n} rows attends to itself both ways and must be decoded in one batch, "
                f"but the batch holds {self.n_batch} (raise LLMOptions.n_batch to at least {n})"
            )
        out = []
        base = self.n_past
        for start in range(0, n, self.n_batch):
            count = min(self.n_batch, n - start)
            batch = lc.llama_batch_init(count, self.n_embd if embd is not None else 0, 1)
            # llama_batch_init allocated n positions, M-RoPE takes 4n: the array it made is put back before
            # free (kept as an address: a pointer field read from a ctypes struct aliases the field itself)
            pos_type, own_pos = type(batch.pos), ctypes.cast(batch.pos, ctypes.c_void_p).value
            try:
                batch.n_tokens = count
                if embd is not None:
                    ctypes.memmove(
                        batch.embd, embd[start : start + count].ctypes.data, embd[start : start + count].nbytes
                    )
                # the batch's arrays filled through numpy views (one C loop each, not count ctypes calls);
                # seq_id is an array of pointers, one small loop
                if tokens is not None:
                    _view(batch.token, count)[:] = tokens[start : start + count]
                _view(batch.pos, count)[:] = np.arange(self.n_past, self.n_past + count, dtype=np.int32)
                _view(batch.n_seq_id, count)[:] = 1
                for i in range(count):
                    batch.seq_id[i][0] = 0
                wanted = _view(batch.logits, count)
                wanted[:] = 1 if all_logits else 0
                if start + count == n:
                    wanted[count - 1] = 1
                if mrope is not None:
                    sections = np.zeros((4, count), np.int32)
                    sections[:3] = mrope[:, start : start + count] + base
                    pos4 = (lc.llama_pos * (4 * count))(*sections.ravel().tolist())  # alive until decode returns
                    batch.pos = ctypes.cast(pos4, pos_type)
                with self.log.active():
                    if not causal:
                        lc.llama_set_causal_attn(self._ctx, False)
                    try:
                        rc = lc.llama_decode(self._ctx, batch)
                    finally:
                        if not causal:
                            lc.llama_set_causal_attn(self._ctx, True)
                if rc != 0:
                    raise RuntimeFailure(f"llama_decode failed with code {rc}: {self.log.last_error()}")
                self.n_past = base + int(mrope.max()) + 1 if mrope is not None else self.n_past + count
                if all_logits:
                    out.extend(self._logits(i) for i in range(count))
            finally:
                batch.pos = ctypes.cast(own_pos, pos_type)
                lc.llama_batch_free(batch)
        return np.stack(out) if all_logits else self._logits(count - 1)

    def _logits(self, i: int) -> np.ndarray:
        ptr = lc.llama_get_logits_ith(self._ctx, i)
        return np.ctypeslib.as_array(ptr, shape=(self.n_vocab,)).copy()

    def rewind(self, n_keep: int, force: bool = False) -> None:
        """Forget positions from ``n_keep`` on (the prefix stays); ``force``: even at ``n_past`` (a cut decode)."""
        if n_keep < self.n_past or (force and n_keep <= self.n_past):
            mem = lc.llama_get_memory(self._ctx)
            if not lc.llama_memory_seq_rm(mem, 0, n_keep, -1):
                lc.llama_memory_clear(mem, True)
                n_keep = 0
            self.n_past = n_keep

    def close(self) -> None:
        """Free the context and model (also done at garbage collection)."""
        if not (getattr(self, "_ctx", None) or getattr(self, "_model", None)):
            return
        with self.log.active():
            if self._ctx:
                if getattr(self, "_pool", None):
                    self._pool_api.detach(self._ctx)
                lc.llama_free(self._ctx)
                self._ctx = None
            if getattr(self, "_pool", None):  # the context no longer uses it
                self._pool_api.free(self._pool)
                self._pool = None
            if self._model:
                lc.llama_model_free(self._model)
                self._model = None

    def __del__(self) -> None:
        self.close()
