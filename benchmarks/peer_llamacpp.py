"""The llama.cpp peer: libllama + libmtmd (llama.cpp's own multimodal path) in process.

Uses llama-cpp-python's ctypes bindings to the same shared libraries edge links
(``llama_cpp`` and ``llama_cpp.mtmd_cpp``), the way ``tools/mtmd/mtmd-cli.cpp`` drives
them: ``mtmd_helper_bitmap_init_from_file`` (stb_image decoding), ``mtmd_tokenize``
(llama.cpp's slicing and layout tokens), ``mtmd_encode_chunk`` per image chunk
(clip.cpp on ggml), ``mtmd_helper_decode_image_chunk`` / ``mtmd_helper_eval_chunk_single``
into the LLM, and llama.cpp's greedy sampler. This benchmark peer is the only module
besides ``edge.runtime.llama_backend`` that imports ``llama_cpp``: it measures llama.cpp itself.

Weights are loaded without ggml's "extra buffer types" on CPUs whose llama.cpp build
reports AMX, exactly as edge does (its AMX kernels segfault on quantized weights on our
machines; see docs/design.md), so both sides run the same matmul kernels.
"""

from __future__ import annotations

import ctypes
import time
from typing import Optional

import llama_cpp as lc
from llama_cpp import mtmd_cpp as mt

from .common import NotAvailable, llm_figures

_IMAGE = mt.MTMD_INPUT_CHUNK_TYPE_IMAGE
_NO_CALLBACK = mt.mtmd_helper_post_decode_callback()  # a NULL function pointer


@lc.llama_log_callback
def _quiet(level, text, user_data):  # llama.cpp's and mtmd's log lines are not the benchmark's output
    return None


class LlamaCppPeer:
    """llama.cpp with an mmproj (``text`` + ``mmproj``) and/or one more GGUF for B3 (``same_gguf``)."""

    name = "llama.cpp"

    def __init__(
        self,
        threads: int,
        n_ctx: int,
        text: Optional[str] = None,
        mmproj: Optional[str] = None,
        same_gguf: Optional[str] = None,
    ) -> None:
        lc.llama_log_set(_quiet, ctypes.c_void_p(0))
        mt.mtmd_log_set(_quiet, ctypes.c_void_p(0))
        mt.mtmd_helper_log_set(_quiet, ctypes.c_void_p(0))
        lc.llama_backend_init()
        self.threads, self.n_ctx = threads, n_ctx
        self._models: list = []
        self.mm = None
        self.n_batch = 512
        if text and mmproj:
            self.model, self.ctx = self._open(text)
            params = mt.mtmd_context_params_default()
            params.use_gpu = False
            params.n_threads = threads
            params.print_timings = False
            self.mm = mt.mtmd_init_from_file(mmproj.encode(), self.model, params)
            if not self.mm:
                raise RuntimeError(f"mtmd cannot load {mmproj}")
            self.marker = mt.mtmd_default_marker().decode()
        self.same_gguf = same_gguf
        self._same = None
        self.sampler = lc.llama_sampler_init_greedy()

    def info(self) -> dict:
        return {
            "llama_cpp_python": lc.__version__,
            "system_info": lc.llama_print_system_info().decode().strip(),
            "extra_buffer_types": self._extra_bufts(),
        }

    @staticmethod
    def _extra_bufts() -> bool:
        return b"AMX_INT8 = 1" not in lc.llama_print_system_info()

    def _open(self, path: str):
        mparams = lc.llama_model_default_params()
        mparams.use_extra_bufts = self._extra_bufts()
        model = lc.llama_model_load_from_file(path.encode(), mparams)
        if not model:
            raise RuntimeError(f"llama.cpp cannot load {path}")
        cparams = lc.llama_context_default_params()
        cparams.n_ctx = self.n_ctx
        cparams.n_threads = cparams.n_threads_batch = self.threads
        cparams.no_perf = True
        ctx = lc.llama_init_from_model(model, cparams)
        if not ctx:
            raise RuntimeError("llama.cpp cannot create a context")
        self._models.append((model, ctx))
        self.n_batch = int(lc.llama_n_batch(ctx))
        return model, ctx

    def _tokenize(self, text: str, bitmaps: list):
        chunks = mt.mtmd_input_chunks_init()
        inp = mt.mtmd_input_text()
        data = text.encode()
        inp.text, inp.text_len, inp.add_special, inp.parse_special = data, len(data), True, True
        arr = (mt.mtmd_bitmap_p_ctypes * max(1, len(bitmaps)))(*bitmaps)
        rc = mt.mtmd_tokenize(self.mm, chunks, ctypes.byref(inp), arr, len(bitmaps))
        if rc != 0:
            mt.mtmd_input_chunks_free(chunks)
            raise RuntimeError(f"mtmd_tokenize failed ({rc})")
        return chunks

    def _need_mm(self) -> None:
        if self.mm is None:
            raise NotAvailable(
                "no mmproj/text GGUF from llama.cpp's converters (pass the HF source and the llama.cpp tree)"
            )

    def _bitmap_rgb(self, image: str):
        from PIL import Image

        img = Image.open(image).convert("RGB")
        buf = (ctypes.c_uint8 * (img.width * img.height * 3)).from_buffer_copy(img.tobytes())
        return mt.mtmd_bitmap_init(img.width, img.height, buf)

    def encode(self, image: str, max_image_tokens: Optional[int] = None, longest_edge: Optional[int] = None) -> dict:
        """B1: ``mtmd_tokenize`` (slicing, resizing, normalising), then ``mtmd_encode_chunk`` per image chunk."""
        self._need_mm()
        if max_image_tokens is not None:
            raise NotAvailable("llama.cpp's mtmd sets image token limits per context, not per request")
        bmp = self._bitmap_rgb(image)  # decoding the file is not part of B1
        try:
            t0 = time.perf_counter()
            chunks = self._tokenize(self.marker, [bmp])
            t1 = time.perf_counter()
            n_tokens = 0
            for i in range(mt.mtmd_input_chunks_size(chunks)):
                chunk = mt.mtmd_input_chunks_get(chunks, i)
                if mt.mtmd_input_chunk_get_type(chunk) == _IMAGE:
                    if mt.mtmd_encode_chunk(self.mm, chunk) != 0:
                        raise RuntimeError("mtmd_encode_chunk failed")
                    n_tokens += mt.mtmd_input_chunk_get_n_tokens(chunk)
            t2 = time.perf_counter()
            mt.mtmd_input_chunks_free(chunks)
        finally:
            mt.mtmd_bitmap_free(bmp)
        return {
            "preprocess_ms": (t1 - t0) * 1e3,
            "encode_ms": (t2 - t1) * 1e3,
            "tiles": None,
            "image_tokens": int(n_tokens),
        }

    def ttft(self, image: str, prompt: str) -> dict:
        """B2: file -> bitmap -> chunks -> encode + decode each chunk -> greedy first token."""
        self._need_mm()
        lc.llama_memory_clear(lc.llama_get_memory(self.ctx), True)
        t0 = time.perf_counter()
        bmp = mt.mtmd_helper_bitmap_init_from_file(self.mm, image.encode(), False)
        if not bmp:
            raise RuntimeError(f"mtmd cannot read {image}")
        chunks = self._tokenize(prompt.replace("<image>", self.marker), [bmp])
        t1 = time.perf_counter()
        encode_s, n_past = 0.0, 0
        new_past = lc.llama_pos(0)
        n = mt.mtmd_input_chunks_size(chunks)
        for i in range(n):
            chunk = mt.mtmd_input_chunks_get(chunks, i)
            if mt.mtmd_input_chunk_get_type(chunk) == _IMAGE:
                ta = time.perf_counter()
                if mt.mtmd_encode_chunk(self.mm, chunk) != 0:
                    raise RuntimeError("mtmd_encode_chunk failed")
                encode_s += time.perf_counter() - ta
                rc = mt.mtmd_helper_decode_image_chunk(
                    self.mm,
                    self.ctx,
                    chunk,
                    mt.mtmd_get_output_embd(self.mm),
                    n_past,
                    0,
                    self.n_batch,
                    ctypes.byref(new_past),
                    _NO_CALLBACK,
                    None,
                )
            else:
                rc = mt.mtmd_helper_eval_chunk_single(
                    self.mm, self.ctx, chunk, n_past, 0, self.n_batch, i == n - 1, ctypes.byref(new_past)
                )
            if rc != 0:
                raise RuntimeError(f"llama.cpp failed to evaluate chunk {i} ({rc})")
            n_past = new_past.value
        lc.llama_sampler_sample(self.sampler, self.ctx, -1)
        t3 = time.perf_counter()
        mt.mtmd_input_chunks_free(chunks)
        mt.mtmd_bitmap_free(bmp)
        return {
            "ttft_ms": (t3 - t0) * 1e3,
            "preprocess_ms": (t1 - t0) * 1e3,
            "encode_ms": encode_s * 1e3,
            "prefill_ms": (t3 - t1 - encode_s) * 1e3,
            "prompt_tokens": int(n_past),
            "tiles": None,
        }

    def _decode(self, ctx, tokens: list[int]) -> None:
        for start in range(0, len(tokens), self.n_batch):
            part = tokens[start : start + self.n_batch]
            arr = (lc.llama_token * len(part))(*part)
            rc = lc.llama_decode(ctx, lc.llama_batch_get_one(arr, len(part)))
            if rc != 0:
                raise RuntimeError(f"llama_decode failed ({rc})")

    def llm(self, ids: list[int], depth: int, n_gen: int) -> dict:
        """B3 on ``same_gguf`` (the bundle's own LLM file): prefill timed after the depth, then
        ``n_gen`` greedy tokens (llama.cpp's sampler; end-of-sequence ignored), as llama-bench
        and the ``simple`` example decode."""
        if self._same is None:
            if not self.same_gguf:
                raise NotAvailable("no GGUF to run")
            self._same = self._open(self.same_gguf)
        _, ctx = self._same
        lc.llama_memory_clear(lc.llama_get_memory(ctx), True)
        if depth:
            self._decode(ctx, ids[:depth])
        c0, t0 = time.process_time(), time.perf_counter()
        self._decode(ctx, ids[depth:])
        c1, t1 = time.process_time(), time.perf_counter()
        stamps, cpu = [], []
        for i in range(n_gen):
            token = lc.llama_sampler_sample(self.sampler, ctx, -1)
            stamps.append(time.perf_counter())
            cpu.append(time.process_time())
            if i < n_gen - 1:
                self._decode(ctx, [token])
        return llm_figures(len(ids) - depth, t1 - t0, stamps, c1 - c0, cpu)

    def _decode_embd(self, ctx, rows) -> None:
        # as libmtmd's mtmd_helper_decode_image_chunk: embedding rows in batches of n_batch, no logits
        # but the last row's (llama.cpp splits each batch into ubatches itself)
        import numpy as np

        n_embd = rows.shape[1]
        for start in range(0, rows.shape[0], self.n_batch):
            part = np.ascontiguousarray(rows[start : start + self.n_batch], dtype=np.float32)
            count = part.shape[0]
            batch = lc.llama_batch_init(count, n_embd, 1)
            try:
                batch.n_tokens = count
                ctypes.memmove(batch.embd, part.ctypes.data, part.nbytes)
                np.ctypeslib.as_array(batch.pos, shape=(count,))[:] = np.arange(self._n_past, self._n_past + count)
                np.ctypeslib.as_array(batch.n_seq_id, shape=(count,))[:] = 1
                logits = np.ctypeslib.as_array(batch.logits, shape=(count,))
                logits[:] = 0
                logits[-1] = 1
                for i in range(count):
                    batch.seq_id[i][0] = 0
                rc = lc.llama_decode(ctx, batch)
            finally:
                lc.llama_batch_free(batch)
            if rc != 0:
                raise RuntimeError(f"llama_decode failed on embeddings ({rc})")
            self._n_past += count

    def llm_embd(self, n_rows: int, seed: int, depth: int, n_gen: int) -> dict:
        """B3 over embedding rows (an image's way into the LLM) on ``same_gguf``: ``depth`` rows fill
        the cache (untimed), the rest are prefilled (timed), then ``n_gen`` greedy tokens."""
        from .common import embedding_rows

        if self._same is None:
            if not self.same_gguf:
                raise NotAvailable("no GGUF to run")
            self._same = self._open(self.same_gguf)
        model, ctx = self._same
        rows = embedding_rows(n_rows, int(lc.llama_model_n_embd(model)), seed)
        lc.llama_memory_clear(lc.llama_get_memory(ctx), True)
        self._n_past = 0
        if depth:
            self._decode_embd(ctx, rows[:depth])
        c0, t0 = time.process_time(), time.perf_counter()
        self._decode_embd(ctx, rows[depth:])
        c1, t1 = time.process_time(), time.perf_counter()
        stamps, cpu = [], []
        for i in range(n_gen):
            token = lc.llama_sampler_sample(self.sampler, ctx, -1)
            stamps.append(time.perf_counter())
            cpu.append(time.process_time())
            if i < n_gen - 1:
                self._decode(ctx, [token])  # llama_batch_get_one: the position after the cache's last
        return llm_figures(n_rows - depth, t1 - t0, stamps, c1 - c0, cpu)

    def decode_after(self, n_gen: int) -> dict:
        """Greedy tokens in the context :meth:`ttft` just filled (end-of-sequence ignored): decode
        tokens/s between the first and the last token, as the other sides count it."""
        stamps = []
        for i in range(n_gen):
            token = lc.llama_sampler_sample(self.sampler, self.ctx, -1)
            stamps.append(time.perf_counter())
            if i < n_gen - 1:
                self._decode(self.ctx, [token])
        return llm_figures(0, 1.0, stamps)

    def close(self) -> None:
        if self.mm:
            mt.mtmd_free(self.mm)
            self.mm = None
        for model, ctx in self._models:
            lc.llama_free(ctx)
            lc.llama_model_free(model)
        self._models = []
