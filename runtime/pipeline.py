"""The pipeline: bundle -> (images -> vision -> embeddings) + prompt -> llama.cpp -> events.

The KV cache is kept between requests: each request is laid out as a sequence of
items (token ids and image embeddings), the longest prefix already in the cache is
kept, and only the rest is evaluated. A chat therefore only pays for its new turn.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Iterator, Optional, Sequence

import numpy as np

from edge.bundle import load_manifest
from edge.errors import ContextOverflowError, InputError, RuntimeFailure
from edge.events import Event, FinishEvent, Placement, Result, Timings, TokenEvent
from edge.options import GenerateOptions, RuntimeOptions
from edge.runtime.chat import ChatSession
from edge.runtime.llama_backend import LLM
from edge.runtime.text.generate import StopText, TextDecoder, join, steps
from edge.runtime.text.prompt import (
    ImageSlot,
    Message,
    VideoSlot,
    expand_videos,
    render_chat,
    splice_prompt,
    split_prompt,
    starts_with_bos,
)
from edge.runtime.text.sampling import Sampler
from edge.runtime.text.sequence import MediaBlock, check_media_facts, media_batch, rows, same, width
from edge.runtime.text.space_prefix import with_space_prefix
from edge.runtime.vision.embed_cache import EmbeddingCache
from edge.runtime.vision.image_io import load_image
from edge.runtime.vision.images import ImageStage
from edge.runtime.vision.schemes import scheme_for


class Pipeline:
    """A loaded bundle, ready to answer. Not thread-safe: one request at a time.

    ``options`` are passed down as they are: ``options.llm`` to llama.cpp (its ``kv_dtype``
    "auto" resolved by the manifest's ``llm.dtype``), ``options.vision`` and ``options.audio``
    to onnxruntime.
    """

    def __init__(self, bundle: str | Path, options: RuntimeOptions = RuntimeOptions()) -> None:
        self.root, self.manifest = load_manifest(bundle)
        m = self.manifest
        if m.llm is None:
            raise InputError(f"{self.root} has no language model ({m.family} bundle); it cannot generate text")
        if m.vision is not None:  # before the LLM loads: a bundle this runtime would run wrongly fails fast
            check_media_facts(m.llm, scheme_for(m.vision, self.root))
        self._positions = m.llm.media_positions
        self._causal_media = m.llm.media_attention == "causal"  # else each block's rows see each other
        llm_options = media_batch(m, options.llm)  # a bidirectional block must fit one ubatch
        self.images = self.vision = self.scheme = None
        if m.vision is not None:
            if m.vision.embed_dim != m.llm.n_embd:
                raise RuntimeFailure("the vision output width does not match the LLM's embedding width")
            # The vision session is built before the LLM loads: building it briefly holds the parsed graph (and
            # f16 weights next to their f32 expansion) until the heap is trimmed; with the LLM's weights and KV
            # cache not resident yet, that transient sets a far lower peak RSS (docs/performance.md).
            self.images = ImageStage(self.root, m.vision, m.files[m.vision.file].sha256, options.vision)
            self.vision, self.scheme = self.images.encoder, self.images.scheme
        self._llm, self._llm_args = None, (llm_options, options.verbose)
        self._one_shot = options.one_shot  # release the vision session once a request's images are encoded
        if not self._one_shot:  # one-shot: the LLM loads on first use, after the images are encoded
            self._load_llm()
        self._seq: list = []  # what the KV cache holds: token ids (int) and MediaBlock items
        self._video_stage = None  # the video stage (edge.runtime.vision.videos), made on first use
        # speech -> text for spoken turns: the bundle's own audio component, or one set by edge.load(speech=...)
        self.speech = None
        if m.audio is not None:
            from edge.runtime.speech.transcribe import Transcriber

            self.speech = Transcriber(self.root, options.audio)

    @property
    def llm(self) -> LLM:
        """The language model on llama.cpp (loaded here on first use in a one-shot pipeline)."""
        return self._llm if self._llm is not None else self._load_llm()

    def _load_llm(self) -> LLM:
        m = self.manifest
        options, verbose = self._llm_args
        llm = LLM(self.root / m.llm.file, options, weights_dtype=m.llm.dtype, verbose=verbose)
        if llm.n_embd != m.llm.n_embd:
            llm.close()
            raise RuntimeFailure(f"{m.llm.file} has n_embd {llm.n_embd}, the manifest says {m.llm.n_embd}")
        self._llm = llm
        return llm

    # --- public API -----------------------------------------------------------------
    def stream(
        self,
        prompt: str,
        images: Sequence = (),
        options: GenerateOptions = GenerateOptions(),
        audio: Sequence = (),
        videos: Sequence = (),
    ) -> Iterator[Event]:
        """Answer one prompt (with images), streaming :class:`TokenEvent` then :class:`FinishEvent`.

        ``audio`` (files, or ``(samples, rate)`` arrays) is transcribed and appended to the prompt.
        ``videos`` are :class:`~edge.video.Video` values, video files (sampled with the bundle's
        defaults) or lists of frames; a raw prompt places them with the bundle's video marker.
        """
        prompt = self.hear(prompt, audio)
        if options.template:
            msgs = ([Message("system", options.system)] if options.system else []) + [
                Message("user", prompt, tuple(images), tuple(videos))
            ]
            return self.stream_messages(msgs, options)
        return self._run(prompt, list(images), options, raw=True, videos=list(videos))

    def generate(
        self,
        prompt: str,
        images: Sequence = (),
        options: GenerateOptions = GenerateOptions(),
        audio: Sequence = (),
        videos: Sequence = (),
    ) -> Result:
        """Blocking form of :meth:`stream`."""
        return join(self.stream(prompt, images, options, audio, videos))

    def hear(self, prompt: str, audio: Sequence = ()) -> str:
        """``prompt`` followed by the transcript of each audio input (a spoken turn)."""
        if not audio:
            return prompt
        if self.speech is None:
            raise InputError("no speech model: pass speech=WHISPER_BUNDLE to edge.load (or --audio-bundle)")
        texts = [self.speech.transcribe(a).text for a in audio]
        return "\n".join(t for t in [prompt.strip(), *texts] if t)

    def stream_messages(
        self, messages: Sequence[Message], options: GenerateOptions = GenerateOptions()
    ) -> Iterator[Event]:
        """Answer a whole conversation rendered through the bundle's chat template."""
        text = render_chat(self.manifest.llm, self.manifest.prompt, messages)
        images = [img for msg in messages for img in msg.images]
        videos = [v for msg in messages for v in msg.videos]
        return self._run(text, images, options, raw=False, videos=videos)

    def chat(self, system: Optional[str] = None) -> "ChatSession":
        """A multi-turn conversation that reuses the KV cache between turns."""
        return ChatSession(self, system)

    def reset(self) -> None:
        """Forget the KV cache and the image embedding cache: the next request starts from
        scratch, as the first one after loading (benchmarks, memory pressure)."""
        self._forget()
        if self.images is not None:
            self.images.reset()
        self._video_stage = None

    @property
    def cache(self) -> Optional[EmbeddingCache]:
        """The image embedding cache (None without a vision component)."""
        return self.images.cache if self.images is not None else None

    @property
    def placement(self) -> dict[str, Placement]:
        """Where each component runs: the ONNX graphs (``vision``, ``audio_encoder``,
        ``audio_decoder``; see :class:`~edge.events.Placement`: what was asked for, what runs,
        any fallback) and ``llm`` (:class:`~edge.runtime.devices.LLMPlacement`: llama.cpp's
        backend and offloaded layers). Each value has ``as_dict()`` for ``--json``."""
        out = {"vision": self.vision.placement} if self.vision is not None else {}
        if self.speech is not None and hasattr(self.speech, "placement"):
            out.update(self.speech.placement)
        out["llm"] = self.llm.placement
        return out

    def close(self) -> None:
        """Release the backends."""
        if self._llm is not None:
            self._llm.close()

    # --- internals ------------------------------------------------------------------
    def _run(self, text: str, images: list, options: GenerateOptions, raw: bool, videos=()) -> Iterator[Event]:
        t0 = time.perf_counter()
        timings = Timings(images=len(images))
        early = None
        if self._one_shot and self._llm is None and images and self.images is not None:
            # the images first: the vision session is released before the LLM loads (docs/performance.md)
            early = self._encode_images(images, options, timings)
        llm_spec = self.manifest.llm
        add_bos = llm_spec.add_bos and (raw or not starts_with_bos(text, llm_spec.bos_token))
        text = with_space_prefix(text, llm_spec.space_prefix, lambda t, sp: self.llm.tokenize(t, special=sp))
        vids = self._videos(videos, timings)
        if vids:
            text = expand_videos(text, self.manifest.prompt, [v.layout for v in vids])
        chunks = split_prompt(text, self.manifest.prompt, len(images), self._tokenize, add_bos)
        if images and self.vision is None:
            for src in images:
                load_image(src)  # a missing or unreadable image is the first thing to say
            raise InputError("this bundle has no vision encoder; it cannot take images")
        encoded = early if early is not None else self._encode_images(images, options, timings)
        if encoded and getattr(self.scheme, "inline_text", False):  # its layout text joins the prompt text
            chunks = splice_prompt(text, self.manifest.prompt, [e.layout for e in encoded], self._tokenize, add_bos)
        target: list = []
        for c in chunks:
            if isinstance(c, VideoSlot):
                v = vids[c.index]
                target.append(MediaBlock(v.block_key(c.block), v.blocks[c.block], v.block_positions(c.block)))
                continue
            if not isinstance(c, ImageSlot):
                target.extend(c)
                continue
            enc = encoded[c.index]
            for piece in enc.layout if c.block is None else [c.block]:
                if isinstance(piece, str):
                    target.extend(self._tokenize(piece, False))
                else:
                    target.append(MediaBlock(enc.block_key(piece), enc.blocks[piece], self._ids(enc, piece)))
        n_pos = sum(width(x, self._positions) for x in target)
        timings.prompt_tokens = n_pos
        if max(n_pos, sum(rows(x) for x in target)) + 1 > self.llm.n_ctx:  # M-RoPE rows outnumber positions
            raise ContextOverflowError(
                f"the prompt needs {n_pos} positions but the context holds {self.llm.n_ctx} "
                "(shorten the prompt, use fewer images or raise --ctx)"
            )
        sampler = Sampler(options.sampling)
        return self._generate(target, sampler, options, timings, t0)

    def _generate(self, target, sampler, options, timings, t0) -> Iterator[Event]:
        t_prefill = time.perf_counter()
        try:
            logits = self._prefill(target, timings)
        except BaseException:
            self._forget()
            raise
        timings.prefill_ms = (time.perf_counter() - t_prefill) * 1000
        decoder = TextDecoder(self.llm.piece)
        stop = StopText(options.stop)
        tokens: list[int] = []
        parts: list[str] = []
        t_first = None
        room = self.llm.n_ctx - sum(rows(x) for x in self._seq)  # free KV cells
        reason = "length"
        try:
            for token, why in steps(logits, sampler, self._feed, options.max_tokens, room, self.manifest.llm.eos_ids):
                if why:
                    reason = why
                    break
                if t_first is None:
                    t_first = time.perf_counter()
                    timings.ttft_ms = (t_first - t0) * 1000
                tokens.append(token)
                delta = stop.push(decoder(token))
                parts.append(delta)
                yield TokenEvent(token, delta)
                if stop.stopped:
                    reason = "stop"
                    break
        except (GeneratorExit, KeyboardInterrupt):
            self._settle()  # stopped early (the stream was closed, Ctrl-C): keep the valid prefix
            raise
        except BaseException:
            self._forget()
            raise
        tail = "" if stop.stopped else stop.push(decoder.flush())
        if stop.stopped:
            reason = "stop"
        else:
            tail += stop.flush()
        if tail:
            parts.append(tail)
            yield TokenEvent(-1, tail)
        t_end = time.perf_counter()
        timings.generated_tokens = len(tokens)
        if t_first is not None:
            timings.decode_ms = (t_end - t_first) * 1000
            if len(tokens) > 1:
                timings.decode_tokens_per_s = (len(tokens) - 1) / max(t_end - t_first, 1e-9)
        yield FinishEvent(reason, "".join(parts), tokens, timings)

    def _prefill(self, target: list, timings: Timings) -> np.ndarray:
        keep = 0
        while keep < min(len(target), len(self._seq)) and same(target[keep], self._seq[keep]):
            keep += 1
        keep = min(keep, len(target) - 1)  # the last item must be evaluated to get logits
        kept_pos = sum(width(x, self._positions) for x in target[:keep])
        self.llm.rewind(kept_pos)
        if self.llm.n_past != kept_pos:  # the cache could not be cut: start over
            keep, kept_pos = 0, 0
        timings.reused_tokens = kept_pos
        self._seq = target[:keep]
        logits = None
        i = keep
        while i < len(target):
            if isinstance(target[i], MediaBlock):
                block = target[i]
                logits = self.llm.eval_embeddings(block.embeds, positions=block.positions, causal=self._causal_media)
                self._seq.append(target[i])
                i += 1
                continue
            j = i
            while j < len(target) and not isinstance(target[j], MediaBlock):
                j += 1
            logits = self.llm.eval_tokens(target[i:j])
            self._seq.extend(target[i:j])
            i = j
        return logits

    def _encode_images(self, images: list, options: GenerateOptions, timings: Timings) -> list:
        encoded = self.images.encode(images, options.budget, timings) if self.images is not None else []
        if encoded and self._one_shot:  # its memory is not needed while the LLM prefills and decodes
            self.images.encoder.release()
        return encoded

    def _videos(self, videos: list, timings: Timings) -> list:
        """Encode the request's videos (files are sampled with the bundle's video defaults)."""
        if not videos:
            return []
        video_spec = self.manifest.vision.video if self.manifest.vision is not None else None
        if video_spec is None or not self.manifest.prompt.video_marker:
            raise InputError(f"this model ({self.manifest.family}) cannot take video")
        from edge.runtime.vision.videos import sample_video, video_stage_for

        if self._video_stage is None:  # made on first use: bundles without video never build one
            vision_id = self.manifest.files[self.manifest.vision.file].sha256
            self._video_stage = video_stage_for(self.vision, self.scheme, video_spec, vision_id)
        sampled = [
            sample_video(str(v), video_spec, None, getattr(self.manifest.vision.preprocess, "temporal_patch_size", 2))
            if isinstance(v, (str, Path))
            else v
            for v in videos
        ]
        return self._video_stage.encode(sampled, timings)

    def _feed(self, token: int) -> np.ndarray:
        logits = self.llm.eval_tokens([token])
        self._seq.append(token)
        return logits

    def _settle(self) -> None:
        """After an interrupted step: keep the items whose positions the KV cache fully holds, and
        clear every position after them (a step cut short may have written some)."""
        pos = n = 0
        for item in self._seq:
            w = width(item, self._positions)
            if pos + w > self.llm.n_past:
                break
            pos, n = pos + w, n + 1
        self._seq = self._seq[:n]
        self.llm.rewind(pos, force=True)

    def _ids(self, enc, piece: int):
        # M-RoPE bundles: the (t, h, w) ids of the block's rows, from its scheme (checked at load)
        return self.scheme.positions(enc.info, piece) if self._positions == "mrope" else None

    def _forget(self) -> None:
        self._seq = []
        self.llm.rewind(0)

    def _tokenize(self, text: str, add_bos: bool) -> list[int]:
        return self.llm.tokenize(text, add_bos=add_bos, special=True)
