"""Whisper speech recognition on onnxruntime: audio -> log-mel -> encoder -> greedy decoder.

A file streams through 30 s windows (bounded memory, any length). Each window is
encoded once; the decoder runs the prompt, then one token at a time with its KV cache,
under Whisper's token rules (``whisper_rules``). With timestamps, a window's tokens
become timed segments and the next window starts after the last complete segment, as
OpenAI's ``transcribe`` does; windows of digital silence are skipped undecoded, and a
window the model itself calls silent (no-speech probability above the threshold with
a low average log-probability) yields no segment.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Optional

import numpy as np

from edge.bundle import load_manifest
from edge.errors import BundleError, InputError, RuntimeFailure
from edge.events import Placement, Segment, Transcript
from edge.manifest import AudioSpec
from edge.options import OnnxOptions, TranscribeOptions
from edge.progress import NullProgress
from edge.runtime.onnx_backend import open_session
from edge.runtime.speech.audio_io import AudioInput, audio_info, stream_audio
from edge.runtime.speech.decode_rules import Vocabulary, apply_rules, log_prob, log_softmax, split_window
from edge.runtime.speech.mel import log_mel, n_window_samples


class WhisperGraphs:
    """The encoder and KV-cached decoder sessions of a bundle's audio component.

    Caches are tuples of per-layer arrays: keys of every layer, then values
    (``cross``: ``[B, H, 1500, Dh]`` each; self-attention: ``[B, H, P, Dh]`` each).
    """

    def __init__(self, root: Path, spec: AudioSpec, options: OnnxOptions = OnnxOptions()) -> None:
        self.spec = spec
        self.encoder = open_session(root / spec.encoder, options)
        self.decoder = open_session(root / spec.decoder, options)
        kv, enc, dec = spec.kv_cache, spec.encoder_io, spec.decoder_io

        def names(role_io: dict, *roles: str) -> list[str]:
            return [
                n
                for r in roles
                for n in (kv.names(role_io[r].name) if "{layer}" in role_io[r].name else [role_io[r].name])
            ]

        self._enc_in = enc["input_features"].name
        self._enc_out = names(enc, "cross_k", "cross_v")
        self._dec_in = names(dec, "input_ids", "self_k", "self_v", "cross_k", "cross_v")
        self._dec_out = names(dec, "logits", "new_self_k", "new_self_v")
        for sess, wanted, name in (
            (self.encoder, [self._enc_in] + self._enc_out, spec.encoder),
            (self.decoder, self._dec_in + self._dec_out, spec.decoder),
        ):
            have = {t.name for t in sess.get_inputs()} | {t.name for t in sess.get_outputs()}
            missing = [n for n in wanted if n not in have]
            if missing:
                raise BundleError(f"{name} lacks the tensors {missing[:4]} that the manifest names")

    @property
    def placement(self) -> dict[str, Placement]:
        """Where each graph runs (``audio_encoder``, ``audio_decoder``)."""
        return {"audio_encoder": self.encoder.placement, "audio_decoder": self.decoder.placement}

    def encode(self, features: np.ndarray) -> tuple[np.ndarray, ...]:
        """Cross-attention keys then values, per layer, of one window's features ``[n_mels, frames]``."""
        feed = {self._enc_in: features[None].astype(np.float32, copy=False)}
        try:
            return tuple(self.encoder.run(self._enc_out, feed))
        except Exception as exc:
            raise RuntimeFailure(
                f"audio encoder failed: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
            ) from None

    def empty_cache(self) -> tuple[np.ndarray, ...]:
        """A self-attention cache with no positions."""
        kv = self.spec.kv_cache
        z = np.zeros((1, kv.heads, 0, kv.head_dim), np.float32)
        return (z,) * (2 * kv.layers)

    def decode(self, ids: list[int], cache: tuple, cross: tuple) -> tuple[np.ndarray, tuple]:
        """Logits ``[V]`` after ``ids`` (fed after the cached positions) and the grown cache."""
        values = (np.asarray([ids], dtype=np.int64), *cache, *cross)
        try:
            logits, *grown = self.decoder.run(self._dec_out, dict(zip(self._dec_in, values)))
        except Exception as exc:
            raise RuntimeFailure(
                f"audio decoder failed: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
            ) from None
        return logits[0], tuple(grown)


class Transcriber:
    """Speech to text with a bundle's Whisper component. Not thread-safe: one call at a time.

    ``options``: how onnxruntime runs the encoder and decoder graphs (threads, providers).
    """

    def __init__(self, bundle: str | Path, options: OnnxOptions = OnnxOptions()) -> None:
        self.root, manifest = load_manifest(bundle)
        if manifest.audio is None:
            raise InputError(f"{self.root} has no speech model (export a Whisper checkpoint with `edge export`)")
        self.spec = manifest.audio
        self.name = manifest.name
        self.graphs = WhisperGraphs(self.root, self.spec, options)
        try:
            strings = json.loads((self.root / self.spec.vocab).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise BundleError(f"cannot read {self.spec.vocab}: {exc}") from None
        if not isinstance(strings, list) or len(strings) != self.spec.vocab_size:
            raise BundleError(f"{self.spec.vocab} must list {self.spec.vocab_size} token strings")
        self.vocab = Vocabulary(strings, self.spec.tokens.eot)

    @property
    def placement(self) -> dict[str, Placement]:
        """Where the speech graphs run (see :class:`~edge.events.Placement`)."""
        return self.graphs.placement

    @property
    def sample_rate(self) -> int:
        """The rate the model hears (audio is resampled to it)."""
        return self.spec.features.sample_rate

    # --- public API -----------------------------------------------------------------
    def transcribe(
        self, audio: AudioInput, options: TranscribeOptions = TranscribeOptions(), progress=NullProgress()
    ) -> Transcript:
        """Transcribe a file or an array (``(samples, rate)``, or samples at :attr:`sample_rate`).

        ``progress`` (the :mod:`edge.progress` interface) counts seconds of audio done.
        """
        t0 = time.perf_counter()
        run = _Run(options.language)
        with progress.bar(
            int(np.ceil(_seconds(audio, self.sample_rate))), "transcribing (seconds of audio)"
        ) as advance:
            run.advance = advance
            segments = list(self.segments(audio, options, run))
        return Transcript(
            text="".join(s.text for s in segments).strip(),
            segments=segments,
            language=run.language or "en",
            duration=run.samples / self.sample_rate,
            elapsed_s=time.perf_counter() - t0,
            timings=dict(run.timings),
        )

    def segments(
        self, audio: AudioInput, options: TranscribeOptions = TranscribeOptions(), run: Optional["_Run"] = None
    ) -> Iterator[Segment]:
        """Timed segments as each 30 s window is decoded; memory stays bounded for any length."""
        self._check(options)
        run = run or _Run(options.language)
        rate, window = self.sample_rate, n_window_samples(self.spec.features)
        blocks = stream_audio(audio, rate, block_seconds=10.0)
        buf, offset, eof = np.zeros(0, np.float32), 0, False
        while True:
            while not eof and buf.size < window:
                block = next(blocks, None)
                if block is None:
                    eof = True
                else:
                    buf = np.concatenate([buf, block])
                    run.samples += block.size
            if buf.size == 0:
                return
            chunk = buf[:window]
            pieces, consumed = self._window(chunk, offset / rate, options, run)
            yield from pieces
            step = max(1, min(int(round(consumed * rate)), chunk.size))
            buf, offset = buf[step:], offset + step
            if run.advance is not None:
                run.advance(step / rate)

    def transcribe_samples(self, samples: np.ndarray, options: TranscribeOptions = TranscribeOptions()) -> str:
        """Text of up to one window of mono samples at :attr:`sample_rate` (for streaming)."""
        self._check(options)
        chunk = np.asarray(samples, np.float32)[: n_window_samples(self.spec.features)]
        pieces, _ = self._window(chunk, 0.0, options, _Run(options.language))
        return "".join(p.text for p in pieces).strip()

    def generate(self, features: np.ndarray, options: TranscribeOptions = TranscribeOptions()) -> list[int]:
        """Greedy tokens (without the prompt or end of text) for one window's log-mel features."""
        self._check(options)
        return greedy_decode(self.graphs, self.graphs.encode(features), options, options.language)[0]

    # --- internals ------------------------------------------------------------------
    def _check(self, options: TranscribeOptions) -> None:
        tokens = self.spec.tokens
        if options.language is not None and self.spec.multilingual and options.language not in tokens.languages:
            raise InputError(f"unknown language {options.language!r} (known: {', '.join(sorted(tokens.languages))})")
        if not self.spec.multilingual and options.language not in (None, "en"):
            raise InputError(f"{self.name} is an English-only model; it cannot transcribe {options.language!r}")
        if options.task == "translate" and not self.spec.multilingual:
            raise InputError(f"{self.name} is an English-only model; it cannot translate")

    def _window(
        self, chunk: np.ndarray, offset_s: float, options: TranscribeOptions, run: "_Run"
    ) -> tuple[list[Segment], float]:
        rate = self.sample_rate
        window_s = chunk.size / rate
        if options.silence_db is not None:
            rms = float(np.sqrt(np.mean(np.square(chunk, dtype=np.float64)))) if chunk.size else 0.0
            if rms <= 10 ** (options.silence_db / 20):
                return [], window_s
        t = time.perf_counter()
        feats = log_mel(chunk, self.spec.features)
        t1 = time.perf_counter()
        cross = self.graphs.encode(feats)
        t2 = time.perf_counter()
        generated, logprob_sum, no_speech, run.language = greedy_decode(self.graphs, cross, options, run.language)
        t3 = time.perf_counter()
        run.timings["features_ms"] += (t1 - t) * 1000
        run.timings["encoder_ms"] += (t2 - t1) * 1000
        run.timings["decoder_ms"] += (t3 - t2) * 1000
        run.windows += 1
        avg = logprob_sum / (len(generated) + 1)
        if (
            options.no_speech_threshold is not None
            and no_speech > options.no_speech_threshold
            and avg < options.logprob_threshold
        ):
            return [], window_s
        split = split_window(generated, self.spec.tokens, window_s, options.timestamps)
        segments = []
        for start, end, toks in split.pieces:
            text = self.vocab.decode([t for t in toks if t < self.spec.tokens.eot])
            if text.strip():
                segments.append(
                    Segment(round(offset_s + start, 3), round(offset_s + end, 3), text, toks, avg, no_speech)
                )
        return segments, split.consumed_s


@dataclass
class _Run:
    """State of one transcription: the language (detected once), counters and timings."""

    language: Optional[str]
    samples: int = 0
    windows: int = 0
    timings: dict = field(default_factory=lambda: {"features_ms": 0.0, "encoder_ms": 0.0, "decoder_ms": 0.0})
    advance: Optional[Callable[[float], None]] = None


def _seconds(audio: AudioInput, rate: int) -> float:
    """Length of the input in seconds (from the file header; 0 when it cannot be told)."""
    try:
        if isinstance(audio, tuple) and len(audio) == 2:
            return len(audio[0]) / float(audio[1])
        if isinstance(audio, np.ndarray):
            return audio.shape[0] / rate
        return audio_info(audio).duration
    except Exception:  # a bad input is reported by the reader itself, with its own message
        return 0.0


def greedy_decode(
    graphs: WhisperGraphs, cross: tuple, options: TranscribeOptions, language: Optional[str] = None
) -> tuple[list[int], float, float, Optional[str]]:
    """Greedy tokens of one encoded window under Whisper's rules.

    Returns the generated tokens (no prompt, no end of text), the sum of their
    log-probabilities (end of text included), the no-speech probability (read at the
    start-of-transcript position) and the language (detected here when a multilingual
    model was given none).
    """
    spec = graphs.spec
    tokens = spec.tokens
    logits, cache = graphs.decode([tokens.sot], graphs.empty_cache(), cross)
    first = log_softmax(logits)
    no_speech = float(np.exp(first[tokens.no_speech])) if tokens.no_speech < first.size else 0.0
    prompt: list[int] = []
    if spec.multilingual:
        if language is None:  # detect from the first window, as Whisper does
            codes = list(tokens.languages)
            language = codes[int(np.argmax(logits[[tokens.languages[c] for c in codes]]))]
        prompt += [tokens.languages[language], tokens.translate if options.task == "translate" else tokens.transcribe]
    if not options.timestamps:
        prompt.append(tokens.notimestamps)
    if prompt:
        logits, cache = graphs.decode(prompt, cache, cross)
    limit = options.max_tokens or spec.kv_cache.max_positions // 2
    limit = min(limit, spec.kv_cache.max_positions - 1 - len(prompt))
    generated: list[int] = []
    total = 0.0  # log-probs of the chosen tokens, end of text included (Whisper's avg_logprob)
    while len(generated) < limit:
        masked = apply_rules(logits, generated, tokens, options.timestamps)
        token = int(np.argmax(masked))
        total += log_prob(masked, token)
        if token == tokens.eot:
            break
        generated.append(token)
        if len(generated) < limit:
            logits, cache = graphs.decode([token], cache, cross)
    return generated, total, no_speech, language


def load_speech(bundle: str | Path, options: OnnxOptions = OnnxOptions()) -> Transcriber:
    """Open the speech component of a bundle (a Whisper bundle, or a bundle carrying one)."""
    return Transcriber(bundle, options)
