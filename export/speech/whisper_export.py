"""``edge export`` of a Whisper checkpoint: a speech bundle (ONNX encoder + decoder, vocabulary).

Flow: load ``WhisperForConditionalGeneration`` and its tokenizer, collect the special
tokens and decoding rules from the generation config, trace the two graphs
(``whisper_onnx``), then check parity against transformers on a probe window: the
encoder's outputs, and greedy tokens of our runtime against ``transformers.generate``.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

import numpy as np

from edge import __version__
from edge.bundle import write_bundle
from edge.errors import ExportError
from edge.export.source import load_hf
from edge.export.speech import whisper_onnx as graphs
from edge.export.vision_onnx import store_weights_f16
from edge.manifest import AudioFeatures, AudioSpec, Manifest, SpeechTokens
from edge.options import OnnxOptions, TranscribeOptions
from edge.runtime.speech.mel import log_mel
from edge.runtime.speech.transcribe import WhisperGraphs, greedy_decode

# max |onnxruntime - torch| of the encoder outputs, relative to their largest magnitude
ENCODER_RTOL = {"f32": 1e-4, "f16": 2e-2}
PARITY_TOKENS = 24


def export_whisper(source, config, out: Path, options, progress) -> Manifest:
    """Export the Whisper checkpoint ``source`` into the bundle ``out`` (written atomically)."""
    import torch
    import transformers

    hf_tok = load_hf(lambda: transformers.AutoTokenizer.from_pretrained(source.path), "tokenizer")
    progress.stage("loading whisper model with transformers")
    model = load_hf(
        lambda: transformers.WhisperForConditionalGeneration.from_pretrained(
            source.path, dtype=torch.float32, attn_implementation="eager"
        ),
        "model",
    )
    model.eval()
    features = _features(source.path, config)
    tokens = speech_tokens(config, model.generation_config, hf_tok)
    strings = vocab_strings(hf_tok, int(config.vocab_size), tokens)
    name = options.name or source.label

    def populate(tmp: Path) -> Manifest:
        progress.stage(f"whisper encoder + decoder -> ONNX ({options.dtype})")
        graphs.export_graphs(model, tmp)
        if options.dtype == "f16":
            for f in (graphs.ENCODER_FILE, graphs.DECODER_FILE):
                store_weights_f16(tmp / f)
        (tmp / graphs.VOCAB_FILE).write_text(json.dumps(strings, ensure_ascii=False), encoding="utf-8")
        enc_io, dec_io = graphs.io_specs(config)
        spec = AudioSpec(
            encoder=graphs.ENCODER_FILE,
            decoder=graphs.DECODER_FILE,
            vocab=graphs.VOCAB_FILE,
            dtype=options.dtype,
            encoder_io=enc_io,
            decoder_io=dec_io,
            kv_cache=graphs.kv_layout(config),
            features=features,
            tokens=tokens,
            vocab_size=int(config.vocab_size),
            multilingual=bool(tokens.languages),
        )
        progress.stage("checking parity with transformers")
        figures = whisper_parity(model, tmp, spec, options.dtype, options.runtime.audio)
        return Manifest(
            name=name,
            family="whisper",
            files={},
            llm=None,
            audio=spec,
            provenance={
                "source": source.label,
                "exporter": f"edge {__version__}",
                "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                "parity": figures,
            },
        )

    return write_bundle(out, populate, overwrite=options.force)


def _features(path: Path, config) -> AudioFeatures:
    f = path / "preprocessor_config.json"
    raw: dict[str, Any] = {}
    if f.is_file():
        try:
            raw = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ExportError(f"cannot read {f}: {exc}") from None
    n_mels = int(raw.get("feature_size", config.num_mel_bins))
    if n_mels != int(config.num_mel_bins):
        raise ExportError(f"preprocessor_config.json has {n_mels} mel bands, the model {config.num_mel_bins}")
    feats = AudioFeatures(
        sample_rate=int(raw.get("sampling_rate", 16000)),
        n_mels=n_mels,
        n_fft=int(raw.get("n_fft", 400)),
        hop_length=int(raw.get("hop_length", 160)),
        chunk_length=int(raw.get("chunk_length", 30)),
    )
    frames = feats.chunk_length * feats.sample_rate // feats.hop_length
    if frames != 2 * int(config.max_source_positions):
        raise ExportError(
            f"a {feats.chunk_length} s window gives {frames} frames; the encoder takes {2 * config.max_source_positions}"
        )
    return feats


def speech_tokens(config, gen, tok) -> SpeechTokens:
    """Special ids and decoding rules from the generation config and tokenizer."""

    def tid(text: str, fallback=None) -> int:
        i = tok.convert_tokens_to_ids(text)
        if i is None or i == tok.unk_token_id and text != tok.unk_token:
            if fallback is None:
                raise ExportError(f"the tokenizer has no {text} token (not a Whisper tokenizer?)")
            return int(fallback)
        return int(i)

    notimestamps = int(getattr(gen, "no_timestamps_token_id", None) or tid("<|notimestamps|>"))
    multilingual = bool(getattr(gen, "is_multilingual", int(config.vocab_size) >= 51865))
    langs = {}
    if multilingual:
        lang_to_id = getattr(gen, "lang_to_id", None) or {}
        langs = {k.strip("<|>"): int(v) for k, v in lang_to_id.items()}
        if not langs:
            raise ExportError("a multilingual Whisper needs lang_to_id in its generation config")
    return SpeechTokens(
        sot=int(config.decoder_start_token_id),
        eot=tid("<|endoftext|>", config.eos_token_id),
        transcribe=tid("<|transcribe|>"),
        translate=tid("<|translate|>"),
        notimestamps=notimestamps,
        # <|nocaptions|> (<|nospeech|> in large-v3) sits right before <|notimestamps|>
        no_speech=notimestamps - 1,
        timestamp_begin=notimestamps + 1,
        languages=langs,
        suppress=[int(t) for t in (getattr(gen, "suppress_tokens", None) or config.suppress_tokens or [])],
        suppress_at_begin=[
            int(t) for t in (getattr(gen, "begin_suppress_tokens", None) or config.begin_suppress_tokens or [])
        ],
        max_initial_timestamp_index=getattr(gen, "max_initial_timestamp_index", None),
    )


def vocab_strings(tok, vocab_size: int, tokens: SpeechTokens) -> list[str]:
    """Every id's token string; ids the tokenizer lacks become timestamp names or ``""``."""
    known = tok.convert_ids_to_tokens(list(range(min(len(tok), vocab_size))))
    out = [t if isinstance(t, str) else "" for t in known]
    for i in range(len(out), vocab_size):
        ts = i - tokens.timestamp_begin
        out.append(f"<|{ts * tokens.time_precision:.2f}|>" if ts >= 0 else "")
    return out


def whisper_parity(model, bundle: Path, spec: AudioSpec, dtype: str, backend: OnnxOptions) -> dict[str, Any]:
    """Encoder outputs and greedy tokens of the ONNX graphs against transformers."""
    import torch

    rng = np.random.default_rng(0)
    rate = spec.features.sample_rate
    t = np.arange(int(4.0 * rate)) / rate
    # a probe window: a chirp with harmonics over noise, then silence (deterministic)
    wave = 0.3 * np.sin(2 * np.pi * (200 + 300 * t) * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))
    wave = (wave + 0.02 * rng.standard_normal(t.size)).astype(np.float32)
    feats = log_mel(wave, spec.features)
    g = WhisperGraphs(bundle, spec, backend)
    ours = g.encoder.run(None, {spec.encoder_io["input_features"].name: feats[None]})  # hidden, k..., v...
    with torch.no_grad():
        ref = graphs.EncoderGraph(model)(torch.from_numpy(feats[None]))
    enc_diff = max(float(np.abs(o - r.numpy()).max()) for o, r in zip(ours, ref))
    enc_scale = max(float(np.abs(r.numpy()).max()) for r in ref)
    options = TranscribeOptions(timestamps=False, max_tokens=PARITY_TOKENS, no_speech_threshold=None, silence_db=None)
    language = "en" if spec.multilingual else None
    tokens_ours = greedy_decode(g, tuple(ours[1:]), options, language)[0]
    kwargs = {"language": language, "task": "transcribe"} if spec.multilingual else {}
    import transformers

    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()  # generate() logs notes about its defaults
    try:
        with torch.no_grad():
            seq = model.generate(
                torch.from_numpy(feats[None]), max_new_tokens=PARITY_TOKENS, return_timestamps=False, **kwargs
            )
    finally:
        transformers.logging.set_verbosity(verbosity)
    eot = spec.tokens.eot
    tokens_ref = [int(x) for x in seq[0].tolist() if x < spec.tokens.sot or x >= spec.tokens.timestamp_begin]
    tokens_ref = tokens_ref[: tokens_ref.index(eot)] if eot in tokens_ref else tokens_ref
    matched = next(
        (i for i, (a, b) in enumerate(zip(tokens_ours, tokens_ref)) if a != b), min(len(tokens_ours), len(tokens_ref))
    )
    figures = {
        "audio_encoder_max_abs_diff": enc_diff,
        "audio_encoder_ref_max_abs": enc_scale,
        "audio_greedy_tokens_matched": int(matched),
        "audio_greedy_tokens_compared": max(len(tokens_ours), len(tokens_ref)),
    }
    if not enc_diff <= ENCODER_RTOL[dtype] * max(enc_scale, 1.0):
        raise ExportError(
            f"audio encoder parity failed: max |onnx - torch| = {enc_diff:.3g} (outputs up to {enc_scale:.3g})"
        )
    if dtype == "f32" and tokens_ours != tokens_ref:
        raise ExportError(f"audio decoder parity failed: greedy tokens differ from transformers after {matched} tokens")
    return figures
