"""Peers measured next to edge: transformers eager on CPU (fp32) and faster-whisper (int8).

llama.cpp's own multimodal path is in :mod:`peer_llamacpp`. Each peer is used the way
its documentation shows a Python user: ``AutoProcessor`` + ``AutoModelForImageTextToText``
in fp32 with the default attention implementation and ``generate`` for decoding;
``faster_whisper.WhisperModel(..., compute_type="int8")``.
"""

from __future__ import annotations

import time
from typing import Optional

from .common import NotAvailable, llm_figures


class TransformersPeer:
    """The HF checkpoint on PyTorch eager, fp32, CPU."""

    name = "transformers"

    def __init__(self, source: str, threads: int) -> None:
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        torch.set_num_threads(threads)
        self.torch = torch
        self.model = AutoModelForImageTextToText.from_pretrained(source, dtype=torch.float32).eval()
        self.processor = AutoProcessor.from_pretrained(source)
        cfg = self.model.config
        self.image_token_id = getattr(cfg, "image_token_id", None)
        if self.image_token_id is None:
            self.image_token_id = cfg.image_token_index

    def info(self) -> dict:
        import transformers

        return {
            "transformers": transformers.__version__,
            "torch": self.torch.__version__,
            "dtype": "float32",
            "attn_implementation": self.model.config._attn_implementation,
            "threads": self.torch.get_num_threads(),
        }

    def _inputs(self, image, prompt: str, longest_edge: Optional[int] = None):
        from PIL import Image

        if not isinstance(image, Image.Image):
            image = Image.open(image).convert("RGB")
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
        text = self.processor.apply_chat_template(messages, add_generation_prompt=True)
        kwargs = {"size": {"longest_edge": longest_edge}} if longest_edge else {}
        inputs = self.processor(images=[[image]], text=[text], return_tensors="pt", **kwargs)
        inputs.pop("token_type_ids", None)
        return inputs

    def _features(self, inputs):
        """The projected image features, as the model's forward computes them."""
        extra = {k: inputs[k] for k in ("pixel_attention_mask", "image_sizes") if k in inputs}
        feats = self.model.get_image_features(pixel_values=inputs["pixel_values"], **extra)
        if isinstance(feats, (list, tuple)):
            feats = self.torch.cat([f.reshape(-1, f.shape[-1]) for f in feats])
        return feats

    def encode(self, image: str, max_image_tokens: Optional[int] = None, longest_edge: Optional[int] = None) -> dict:
        """B1: the processor's slicing/normalisation, then ``get_image_features`` on every tile."""
        from PIL import Image

        if max_image_tokens is not None and not longest_edge:
            raise NotAvailable("this model's processor has no token budget")
        img = Image.open(image).convert("RGB")
        t0 = time.perf_counter()
        inputs = self._inputs(img, "", longest_edge)
        t1 = time.perf_counter()
        with self.torch.inference_mode():
            feats = self._features(inputs)
        t2 = time.perf_counter()
        n_tokens = int(feats.reshape(-1, feats.shape[-1]).shape[0])
        pv = inputs["pixel_values"]
        tiles = int(pv.shape[0] * pv.shape[1]) if pv.ndim == 5 else int(pv.shape[0])
        return {
            "preprocess_ms": (t1 - t0) * 1e3,
            "encode_ms": (t2 - t1) * 1e3,
            "tiles": tiles,
            "image_tokens": n_tokens,
        }

    def ttft(self, image: str, prompt: str) -> dict:
        """B2: open the file, processor, image features, then the forward pass over the whole
        prompt (image rows merged where the image tokens stand) and the greedy first token.
        These are the steps ``generate`` runs, timed one by one."""
        torch = self.torch
        t0 = time.perf_counter()
        inputs = self._inputs(image, prompt)
        t1 = time.perf_counter()
        with torch.inference_mode():
            feats = self._features(inputs)
            t2 = time.perf_counter()
            ids = inputs["input_ids"]
            embeds = self.model.get_input_embeddings()(ids)
            mask = ids == self.image_token_id
            embeds[mask] = feats.reshape(-1, embeds.shape[-1]).to(embeds.dtype)
            out = self.model(
                inputs_embeds=embeds, attention_mask=inputs.get("attention_mask"), use_cache=True, logits_to_keep=1
            )
            int(out.logits[0, -1].argmax())
        t3 = time.perf_counter()
        return {
            "ttft_ms": (t3 - t0) * 1e3,
            "preprocess_ms": (t1 - t0) * 1e3,
            "encode_ms": (t2 - t1) * 1e3,
            "prefill_ms": (t3 - t2) * 1e3,
            "prompt_tokens": int(ids.shape[1]),
            "tiles": None,
        }

    def llm(self, ids: list[int], depth: int, n_gen: int) -> dict:
        """B3: the depth fills a KV cache (untimed), the rest is one timed forward pass, then
        ``generate`` decodes ``n_gen`` tokens greedily (``min_new_tokens`` = ``max_new_tokens``,
        so end-of-sequence is ignored); a streamer stamps each token."""
        torch = self.torch
        from transformers import DynamicCache

        model = self.model
        all_ids = torch.tensor([ids])
        cache = DynamicCache()
        with torch.inference_mode():
            if depth:
                model(input_ids=all_ids[:, :depth], past_key_values=cache, use_cache=True, logits_to_keep=1)
            t0 = time.perf_counter()
            model(input_ids=all_ids[:, depth:-1], past_key_values=cache, use_cache=True, logits_to_keep=1)
            t1 = time.perf_counter()
            stamps = _Stamps()
            # the cache holds all but the last prompt token: generate evaluates it, then decodes
            model.generate(
                input_ids=all_ids,
                attention_mask=torch.ones_like(all_ids),
                past_key_values=cache,
                max_new_tokens=n_gen,
                min_new_tokens=n_gen,
                do_sample=False,
                streamer=stamps,
                pad_token_id=0,
            )
        n_prompt = len(ids) - depth - 1
        return llm_figures(n_prompt, t1 - t0, stamps.times)

    def close(self) -> None:
        self.model = None


class _Stamps:
    """A ``generate`` streamer that records when each new token arrives (the first ``put`` is the prompt)."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self._prompt_seen = False

    def put(self, value) -> None:
        if not self._prompt_seen:
            self._prompt_seen = True
            return
        self.times.append(time.perf_counter())

    def end(self) -> None:
        pass


class FasterWhisperPeer:
    """faster-whisper (CTranslate2) with int8 weights: B5 real-time factor."""

    name = "faster-whisper"

    def __init__(self, model_dir: str, threads: int) -> None:
        try:
            from faster_whisper import WhisperModel
        except ImportError:
            raise NotAvailable("faster-whisper is not installed") from None
        self.model = WhisperModel(model_dir, device="cpu", compute_type="int8", cpu_threads=threads)

    def info(self) -> dict:
        import faster_whisper

        return {"faster_whisper": faster_whisper.__version__, "compute_type": "int8"}

    def transcribe(self, audio: str) -> dict:
        """Transcribe a 16 kHz wav as edge does: greedy (beam 1, temperature 0 without fallback), with
        timestamps, no VAD, no conditioning on previous text; real-time factor = wall / audio seconds."""
        t0 = time.perf_counter()
        segments, info = self.model.transcribe(
            audio, beam_size=1, temperature=0.0, vad_filter=False, condition_on_previous_text=False
        )
        text = "".join(s.text for s in segments).strip()  # the generator does the work
        wall = time.perf_counter() - t0
        return {
            "wall_ms": wall * 1e3,
            "audio_s": info.duration,
            "rtf": wall / max(info.duration, 1e-9),
            "chars": len(text),
            "text": text[:160],
        }

    def close(self) -> None:
        self.model = None
