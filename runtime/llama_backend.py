"""The language model on llama.cpp, through llama-cpp-python's low-level C API.

This is the only module that imports ``llama_cpp``. Text goes in as token ids
(``llama_batch.token``) and images as embedding rows (``llama_batch.embd``), both
at explicit positions of sequence 0; the KV cache persists between calls so a
chat only evaluates what is new.
"""
from __future__ import annotations

import collections
import ctypes
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import llama_cpp as lc
import numpy as np

from edge.errors import ContextOverflowError, InputError, RuntimeFailure


@dataclass(frozen=True)
class LLMOptions:
    """How to open the LLM: context size (0 = the bundle default), threads, batch."""

    n_ctx: int = 0
    threads: int = 0
    n_batch: int = 512
    verbose: bool = False
    # "f32" keeps the KV cache and attention in f32 (exact parity for f32 bundles);
    # "f16" halves KV memory and lets llama.cpp pick flash attention.
    kv_dtype: str = "f16"

    def __post_init__(self) -> None:
        if self.n_ctx < 0:
            raise InputError(f"context size must be positive, got {self.n_ctx}")
        if self.threads < 0:
            raise InputError(f"threads must be positive, got {self.threads}")
        if self.n_batch < 1:
            raise InputError(f"batch size must be positive, got {self.n_batch}")
        if self.kv_dtype not in ("f16", "f32"):
            raise InputError(f"KV cache dtype must be f16 or f32, got {self.kv_dtype!r}")


_GGML_TYPE_F32 = 0  # ggml_type enum value


class _Log:
    """Routes llama.cpp's log lines: kept (last lines, for error messages) or printed."""

    verbose = False
    recent: collections.deque = collections.deque(maxlen=20)
    # called with every log text while set (quantize_gguf reads its progress from it)
    listener: Optional[Callable[[str], None]] = None

    @staticmethod
    def _callback(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        line = text.decode("utf-8", errors="replace")
        _Log.recent.append(line.strip())
        if _Log.listener is not None:
            _Log.listener(line)
        if _Log.verbose:
            import sys

            sys.stderr.write(line)

    c_callback = lc.llama_log_callback(_callback)

    @classmethod
    def install(cls, verbose: bool) -> None:
        cls.verbose = verbose
        lc.llama_log_set(cls.c_callback, ctypes.c_void_p(0))

    @classmethod
    def last_error(cls) -> str:
        lines = [l for l in cls.recent if l]
        return lines[-1] if lines else "no details"


def system_info() -> str:
    """llama.cpp's build and CPU feature line (for ``edge doctor``)."""
    return lc.llama_print_system_info().decode("utf-8", errors="replace").strip()


def backend_version() -> str:
    """The llama-cpp-python version."""
    return lc.__version__


# llama.cpp's quantization types, by the names its ``llama-quantize`` tool uses (``llama_ftype``).
GGUF_QUANT_TYPES: dict[str, int] = {
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
    _Log.install(False)
    lc.llama_backend_init()
    params = lc.llama_model_quantize_default_params()
    params.nthread = threads or max(1, os.cpu_count() or 1)
    params.ftype = GGUF_QUANT_TYPES[ftype]
    state = {"done": 0, "total": 0, "rc": None}

    def listen(text: str) -> None:
        match = _TENSOR_LINE.search(text)
        if match:
            state["done"], state["total"] = int(match.group(1)), int(match.group(2))

    def work() -> None:
        state["rc"] = int(lc.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params)))

    _Log.listener = listen
    try:
        worker = threading.Thread(target=work, name="llama-quantize", daemon=True)
        worker.start()
        alive = True
        while alive:
            worker.join(0.1)
            alive = worker.is_alive()
            if progress is not None:
                progress(state["done"], state["total"])
    finally:
        _Log.listener = None
    if state["rc"] != 0:
        raise RuntimeFailure(f"llama.cpp cannot quantize {Path(src).name} to {ftype}: {_Log.last_error()}")


class LLM:
    """One llama.cpp model and context with a single sequence and a position counter."""

    def __init__(self, path: Path, options: LLMOptions = LLMOptions(), default_ctx: int = 4096) -> None:
        _Log.install(options.verbose)
        lc.llama_backend_init()
        mparams = lc.llama_model_default_params()
        # ggml's AMX matmul kernels (an "extra buffer type") segfault on quantized
        # weights on the AMX machines we test on (ggml_backend_amx_mul_mat), which
        # no caller could catch; keep weights in plain CPU buffers on such builds.
        mparams.use_extra_bufts = "AMX_INT8 = 1" not in system_info()
        self._model = lc.llama_model_load_from_file(str(path).encode(), mparams)
        if not self._model:
            raise RuntimeFailure(f"llama.cpp cannot load {path}: {_Log.last_error()}")
        self._vocab = lc.llama_model_get_vocab(self._model)
        self.n_embd = int(lc.llama_model_n_embd(self._model))
        self.n_vocab = int(lc.llama_vocab_n_tokens(self._vocab))
        n_train = int(lc.llama_model_n_ctx_train(self._model))
        cparams = lc.llama_context_default_params()
        cparams.n_ctx = options.n_ctx or min(n_train, default_ctx)
        cparams.n_batch = cparams.n_ubatch = options.n_batch
        # llama.cpp's own default (4) oversubscribes small machines: use the cores we have
        threads = options.threads or max(1, os.cpu_count() or 1)
        cparams.n_threads = cparams.n_threads_batch = threads
        cparams.no_perf = True
        if options.kv_dtype == "f32":
            cparams.type_k = cparams.type_v = _GGML_TYPE_F32
            cparams.flash_attn_type = lc.LLAMA_FLASH_ATTN_TYPE_DISABLED
        self._ctx = lc.llama_init_from_model(self._model, cparams)
        if not self._ctx:
            lc.llama_model_free(self._model)
            self._model = None
            raise RuntimeFailure(f"llama.cpp cannot create a context: {_Log.last_error()}")
        self.n_ctx = int(lc.llama_n_ctx(self._ctx))
        self.n_batch = options.n_batch
        self.n_past = 0

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

    def eval_embeddings(self, embd: np.ndarray, all_logits: bool = False) -> Optional[np.ndarray]:
        """Append embedding rows ``[n, n_embd]`` (an image) at the current position."""
        embd = np.ascontiguousarray(embd, dtype=np.float32)
        if embd.ndim != 2 or embd.shape[1] != self.n_embd:
            raise RuntimeFailure(
                f"embeddings of shape {tuple(embd.shape)} do not fit this LLM (n_embd={self.n_embd})"
            )
        return self._eval(embd.shape[0], all_logits, embd=embd)

    def _eval(self, n: int, all_logits: bool, tokens=None, embd=None) -> Optional[np.ndarray]:
        if n == 0:
            return None
        if self.n_past + n > self.n_ctx:
            raise ContextOverflowError(
                f"the prompt needs {self.n_past + n} positions but the context holds {self.n_ctx} "
                "(shorten the prompt, use fewer images or raise --ctx)"
            )
        out = []
        for start in range(0, n, self.n_batch):
            count = min(self.n_batch, n - start)
            batch = lc.llama_batch_init(count, self.n_embd if embd is not None else 0, 1)
            try:
                batch.n_tokens = count
                if embd is not None:
                    ctypes.memmove(batch.embd, embd[start:start + count].ctypes.data, embd[start:start + count].nbytes)
                for i in range(count):
                    if tokens is not None:
                        batch.token[i] = tokens[start + i]
                    batch.pos[i] = self.n_past + i
                    batch.n_seq_id[i] = 1
                    batch.seq_id[i][0] = 0
                    batch.logits[i] = all_logits or (start + i == n - 1)
                rc = lc.llama_decode(self._ctx, batch)
                if rc != 0:
                    raise RuntimeFailure(f"llama_decode failed with code {rc}: {_Log.last_error()}")
                self.n_past += count
                if all_logits:
                    out.extend(self._logits(i) for i in range(count))
            finally:
                lc.llama_batch_free(batch)
        return np.stack(out) if all_logits else self._logits(count - 1)

    def _logits(self, i: int) -> np.ndarray:
        ptr = lc.llama_get_logits_ith(self._ctx, i)
        return np.ctypeslib.as_array(ptr, shape=(self.n_vocab,)).copy()

    def rewind(self, n_keep: int) -> None:
        """Forget everything from position ``n_keep`` on (the KV cache keeps the prefix)."""
        if n_keep < self.n_past:
            mem = lc.llama_get_memory(self._ctx)
            if not lc.llama_memory_seq_rm(mem, 0, n_keep, -1):
                lc.llama_memory_clear(mem, True)
                n_keep = 0
            self.n_past = n_keep

    def close(self) -> None:
        """Free the context and model (also done at garbage collection)."""
        if getattr(self, "_ctx", None):
            lc.llama_free(self._ctx)
            self._ctx = None
        if getattr(self, "_model", None):
            lc.llama_model_free(self._model)
            self._model = None

    def __del__(self) -> None:
        self.close()
