"""llama.cpp's own multimodal path (libmtmd + clip) on a bundle's LLM GGUF and mmproj GGUF.

The edge runtime does not need it (it encodes images with onnxruntime); this module is how the
exporter measures the mmproj GGUF against transformers and how tests check that llama.cpp's tools
run an edge bundle. It drives llama-cpp-python's ``llama_cpp.mtmd_cpp`` bindings the way
``tools/mtmd/mtmd-cli.cpp`` does: a bitmap of RGB bytes, ``mtmd_tokenize`` (libmtmd's own resizing,
slicing and layout tokens), ``mtmd_encode_chunk`` per image chunk (``mtmd_get_output_embd``), and
``mtmd_helper_eval_chunk_single`` / ``mtmd_helper_decode_image_chunk`` into the LLM, then greedy
tokens. Besides :mod:`edge.runtime.llama_backend` (libllama), this is the only runtime module that
imports ``llama_cpp`` (house rule 3; ``tests/unit/test_house_rules.py`` allows exactly these two).
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import llama_cpp as lc
import numpy as np
from llama_cpp import mtmd_cpp as mt

from edge.errors import BundleError, InputError, RuntimeFailure

_IMAGE = mt.MTMD_INPUT_CHUNK_TYPE_IMAGE
_NO_CALLBACK = mt.mtmd_helper_post_decode_callback()  # a NULL function pointer


@lc.llama_log_callback
def _quiet(level, text, user_data):  # clip's load and encode logs are not the caller's output
    return None


class MtmdSession:
    """One LLM GGUF + one mmproj GGUF loaded by libmtmd, on the CPU, with ``threads`` threads.

    Not thread-safe; :meth:`close` frees the model, context and clip (also on ``with`` exit).
    """

    def __init__(self, llm_gguf: Path, mmproj_gguf: Path, threads: int = 2, n_ctx: int = 2048) -> None:
        lc.llama_log_set(_quiet, ctypes.c_void_p(0))
        mt.mtmd_log_set(_quiet, ctypes.c_void_p(0))
        mt.mtmd_helper_log_set(_quiet, ctypes.c_void_p(0))
        lc.llama_backend_init()
        self.model = self.ctx = self.mm = None
        mparams = lc.llama_model_default_params()
        mparams.n_gpu_layers = 0
        # ggml's AMX "extra buffer" kernels crash on our machines (see llama_backend); the same kernels as edge
        mparams.use_extra_bufts = b"AMX_INT8 = 1" not in lc.llama_print_system_info()
        self.model = lc.llama_model_load_from_file(str(llm_gguf).encode(), mparams)
        if not self.model:
            raise BundleError(f"llama.cpp cannot load {llm_gguf}")
        cparams = lc.llama_context_default_params()
        cparams.n_ctx = n_ctx
        cparams.n_batch = n_ctx
        cparams.n_ubatch = n_ctx  # non-causal image rows (Gemma 3) must fit one micro-batch
        cparams.n_threads = cparams.n_threads_batch = threads
        cparams.no_perf = True
        self.ctx = lc.llama_init_from_model(self.model, cparams)
        if not self.ctx:
            self.close()
            raise RuntimeFailure("llama.cpp cannot create a context")
        params = mt.mtmd_context_params_default()
        params.use_gpu = False
        params.n_threads = threads
        params.print_timings = False
        params.warmup = False
        self.mm = mt.mtmd_init_from_file(str(mmproj_gguf).encode(), self.model, params)
        if not self.mm:
            self.close()
            raise BundleError(f"llama.cpp's multimodal library cannot load {mmproj_gguf}")
        self.marker = mt.mtmd_default_marker().decode()
        self.n_embd = int(lc.llama_model_n_embd(self.model))
        self.n_batch = n_ctx

    def __enter__(self) -> "MtmdSession":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _bitmap(self, rgb: np.ndarray):
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8 or 0 in rgb.shape:
            raise InputError(f"an image for libmtmd must be HxWx3 uint8, got {rgb.shape} {rgb.dtype}")
        data = np.ascontiguousarray(rgb)
        buf = (ctypes.c_uint8 * data.size).from_buffer_copy(data.tobytes())
        return mt.mtmd_bitmap_init(int(rgb.shape[1]), int(rgb.shape[0]), buf)

    def _chunks(self, text: str, rgb: np.ndarray):
        bmp = self._bitmap(rgb)
        chunks = mt.mtmd_input_chunks_init()
        inp = mt.mtmd_input_text()
        data = text.encode()
        inp.text, inp.text_len, inp.add_special, inp.parse_special = data, len(data), True, True
        arr = (mt.mtmd_bitmap_p_ctypes * 1)(bmp)
        rc = mt.mtmd_tokenize(self.mm, chunks, ctypes.byref(inp), arr, 1)
        mt.mtmd_bitmap_free(bmp)
        if rc != 0:
            mt.mtmd_input_chunks_free(chunks)
            raise RuntimeFailure(f"mtmd_tokenize failed ({rc})")
        return chunks

    def encode(self, rgb: np.ndarray) -> list[np.ndarray]:
        """libmtmd's preprocessing and clip on one RGB image: the embedding rows of each image chunk
        (``[n_tokens, n_embd]`` each, in prompt order; the text chunks between them are left out)."""
        chunks = self._chunks(self.marker, rgb)
        out = []
        try:
            for i in range(mt.mtmd_input_chunks_size(chunks)):
                chunk = mt.mtmd_input_chunks_get(chunks, i)
                if mt.mtmd_input_chunk_get_type(chunk) != _IMAGE:
                    continue
                if mt.mtmd_encode_chunk(self.mm, chunk) != 0:
                    raise RuntimeFailure("mtmd_encode_chunk failed")
                n = int(mt.mtmd_input_chunk_get_n_tokens(chunk))
                ptr = mt.mtmd_get_output_embd(self.mm)
                out.append(np.ctypeslib.as_array(ptr, shape=(n * self.n_embd,)).reshape(n, self.n_embd).copy())
        finally:
            mt.mtmd_input_chunks_free(chunks)
        return out

    def generate(self, prompt: str, rgb: np.ndarray, max_tokens: int = 16) -> list[int]:
        """Evaluate ``prompt`` (its :attr:`marker` stands for the image) with libmtmd's layout, then
        return up to ``max_tokens`` greedy tokens (stopping at an end-of-generation token)."""
        lc.llama_memory_clear(lc.llama_get_memory(self.ctx), True)
        chunks = self._chunks(prompt, rgb)
        n_past = 0
        new_past = lc.llama_pos(0)
        try:
            n = mt.mtmd_input_chunks_size(chunks)
            for i in range(n):
                chunk = mt.mtmd_input_chunks_get(chunks, i)
                if mt.mtmd_input_chunk_get_type(chunk) == _IMAGE:
                    if mt.mtmd_encode_chunk(self.mm, chunk) != 0:
                        raise RuntimeFailure("mtmd_encode_chunk failed")
                    embd = mt.mtmd_get_output_embd(self.mm)
                    rc = mt.mtmd_helper_decode_image_chunk(
                        self.mm,
                        self.ctx,
                        chunk,
                        embd,
                        n_past,
                        0,
                        self.n_batch,
                        ctypes.byref(new_past),
                        _NO_CALLBACK,
                        None,
                    )
                else:
                    last = i == n - 1
                    rc = mt.mtmd_helper_eval_chunk_single(
                        self.mm, self.ctx, chunk, n_past, 0, self.n_batch, last, ctypes.byref(new_past)
                    )
                if rc != 0:
                    raise RuntimeFailure(f"llama.cpp failed to evaluate prompt chunk {i} ({rc})")
                n_past = new_past.value
        finally:
            mt.mtmd_input_chunks_free(chunks)
        vocab = lc.llama_model_get_vocab(self.model)
        sampler = lc.llama_sampler_init_greedy()
        tokens: list[int] = []
        try:
            for _ in range(max_tokens):
                tok = int(lc.llama_sampler_sample(sampler, self.ctx, -1))
                if lc.llama_vocab_is_eog(vocab, tok):
                    break
                tokens.append(tok)
                arr = (lc.llama_token * 1)(tok)
                if lc.llama_decode(self.ctx, lc.llama_batch_get_one(arr, 1)) != 0:
                    raise RuntimeFailure("llama_decode failed")
        finally:
            lc.llama_sampler_free(sampler)
        return tokens

    def close(self) -> None:
        """Free clip, the context and the model (idempotent)."""
        if self.mm:
            mt.mtmd_free(self.mm)
            self.mm = None
        if self.ctx:
            lc.llama_free(self.ctx)
            self.ctx = None
        if self.model:
            lc.llama_model_free(self.model)
            self.model = None
