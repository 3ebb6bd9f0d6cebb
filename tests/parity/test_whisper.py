"""A tiny random Whisper: export, encoder parity with torch, greedy tokens identical to
``transformers.generate`` (with and without timestamps), and speech in the pipeline/chat."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import run_cli

from edge.bundle import load_manifest
from edge.export.builders import TINY_BUILDERS
from edge.export.builders.tiny_whisper import tiny_whisper_multilingual
from edge.export.registry import speech_families
from edge.options import OnnxOptions, TranscribeOptions
from edge.runtime.speech.audio_io import load_audio
from edge.runtime.speech.decode_rules import split_window
from edge.runtime.speech.mel import log_mel
from edge.runtime.speech.transcribe import Transcriber

N_TOKENS = 30


@pytest.fixture(scope="module")
def hf_model(tiny_whisper_dir):
    from transformers import WhisperForConditionalGeneration

    return WhisperForConditionalGeneration.from_pretrained(tiny_whisper_dir).eval()


@pytest.fixture(scope="module")
def transcriber(tiny_whisper_bundle):
    return Transcriber(tiny_whisper_bundle, OnnxOptions(threads=2))


@pytest.fixture(scope="module")
def inputs(speech_fixtures):
    """Log-mel windows: three recordings (one stereo 44.1 kHz) and seeded noise."""
    paths = sorted(speech_fixtures)
    feats = {p.rsplit("/", 1)[-1]: log_mel(load_audio(p)) for p in (paths[0], paths[4], paths[6])}
    feats["noise"] = log_mel((0.05 * np.random.default_rng(5).standard_normal(16000 * 8)).astype(np.float32))
    return feats


def test_every_speech_family_has_a_tiny_model_builder():
    missing = set(speech_families()) - set(TINY_BUILDERS)
    assert not missing, f"speech families without a tiny-model test: {sorted(missing)}"


def test_the_bundle_is_a_speech_bundle(tiny_whisper_bundle):
    _, m = load_manifest(tiny_whisper_bundle, verify=True)
    assert m.family == "whisper" and m.llm is None and m.vision is None
    a = m.audio
    assert set(m.component_files()) == {a.encoder, a.decoder, a.vocab} <= set(m.files)
    assert (a.kv_cache.layers, a.kv_cache.heads, a.kv_cache.head_dim) == (2, 4, 16)
    assert a.kv_cache.names(a.decoder_io["self_k"].name) == ["self_k.0", "self_k.1"]
    assert (a.features.n_mels, a.features.sample_rate, a.features.n_fft, a.features.hop_length) == (80, 16000, 400, 160)
    t = a.tokens
    assert (t.sot, t.eot, t.notimestamps, t.timestamp_begin, t.no_speech) == (50257, 50256, 50362, 50363, 50361)
    assert 220 in t.suppress_at_begin and len(t.suppress) > 50 and not a.multilingual
    vocab = json.loads((tiny_whisper_bundle / a.vocab).read_text())
    assert len(vocab) == a.vocab_size == 51864 and vocab[50363] == "<|0.00|>" and vocab[383] == "\u0120The"
    parity = m.provenance["parity"]
    assert parity["audio_greedy_tokens_matched"] == parity["audio_greedy_tokens_compared"] > 0
    assert parity["audio_encoder_max_abs_diff"] < 1e-4


def test_encoder_outputs_match_torch(hf_model, transcriber, inputs):
    spec = transcriber.spec
    for name, feats in inputs.items():
        h, *kv = transcriber.graphs.encoder.run(None, {spec.encoder_io["input_features"].name: feats[None]})
        assert len(kv) == 4  # cross_k.0, cross_k.1, cross_v.0, cross_v.1
        with torch.no_grad():
            ref = hf_model.model.encoder(torch.from_numpy(feats[None])).last_hidden_state
            ref_k = hf_model.model.decoder.layers[1].encoder_attn.k_proj(ref)[0].view(1500, 4, 16).transpose(0, 1)
        assert np.abs(h - ref.numpy()).max() < 1e-4, name
        assert np.abs(kv[1][0] - ref_k.numpy()).max() < 1e-4, name


@pytest.mark.parametrize("timestamps", [False, True], ids=["text", "timestamps"])
def test_greedy_tokens_identical_to_generate(hf_model, transcriber, inputs, timestamps):
    from transformers.utils import logging

    logging.set_verbosity_error()
    opts = TranscribeOptions(timestamps=timestamps, max_tokens=N_TOKENS, no_speech_threshold=None, silence_db=None)
    t = transcriber.spec.tokens
    # with timestamps transformers goes on seeking through the window: two inputs keep it short
    for name, feats in list(inputs.items())[-2 if timestamps else 0 :]:
        with torch.no_grad():
            out = hf_model.generate(
                torch.from_numpy(feats[None]),
                max_new_tokens=N_TOKENS,
                return_timestamps=timestamps,
                return_segments=timestamps,
                return_dict_in_generate=True,
            )
        # with timestamps, transformers decodes window after window (seeking like Whisper's
        # transcribe); the first window's raw tokens are those of one greedy decode
        seq = out["segments"][0][0]["result"]["sequences"] if timestamps else out["sequences"][0]
        ref = _generated(seq.tolist(), [t.sot] + ([] if timestamps else [t.notimestamps]), t.eot)
        ours = transcriber.generate(feats, opts)
        assert ours == ref, name
        assert len(ours) > 3
        if timestamps:
            assert ours[0] >= t.timestamp_begin  # a window starts with a timestamp
            # and the window is cut into the same timed segments
            split = split_window(ours, t, 30.0, True)
            hf_first = [
                (float(s["start"]), float(s["end"]), s["tokens"].tolist())
                for s in out["segments"][0]
                if float(s["start"]) < 30.0 - 1e-6
            ]

            def timed_text(pieces):
                return [(round(a, 2), round(b, 2), [x for x in p if x < t.eot]) for a, b, p in pieces]

            assert timed_text(split.pieces) == timed_text(hf_first), name


def _generated(seq: list, prompt: list[int], eot: int) -> list[int]:
    """The generated tokens of a transformers output (which may or may not repeat the prompt)."""
    seq = [int(x) for x in seq]
    if seq[: len(prompt)] == prompt:
        seq = seq[len(prompt) :]
    return seq[: seq.index(eot)] if eot in seq else seq


@pytest.fixture(scope="module")
def multilingual(tmp_path_factory):
    """A tiny random Whisper laid out as a multilingual one (languages, tasks), exported."""
    from conftest import export_bundle
    from transformers import WhisperForConditionalGeneration

    src = tiny_whisper_multilingual(tmp_path_factory.mktemp("tiny_whisper_ml"))
    bundle = export_bundle(src, tmp_path_factory.mktemp("bundles") / "whisper-ml-f32")
    return WhisperForConditionalGeneration.from_pretrained(src).eval(), Transcriber(bundle, OnnxOptions(threads=2))


@pytest.mark.parametrize("language,task", [("de", "translate"), ("fr", "transcribe"), (None, "transcribe")])
def test_multilingual_prompts_and_language_detection(multilingual, inputs, language, task):
    from transformers.utils import logging

    from edge.runtime.speech.transcribe import greedy_decode

    logging.set_verbosity_error()
    model, tr = multilingual
    assert tr.spec.multilingual and len(tr.spec.tokens.languages) == 99 and tr.spec.tokens.sot == 50258
    feats = inputs["noise"]
    kwargs = {"task": task, **({"language": language} if language else {})}
    t = tr.spec.tokens
    with torch.no_grad():
        seq = model.generate(torch.from_numpy(feats[None]), max_new_tokens=N_TOKENS, **kwargs)[0].tolist()
        detected = int(model.detect_language(torch.from_numpy(feats[None]))[0])
    lang_id = t.languages[language] if language else detected
    ref = _generated(seq, [t.sot, lang_id, t.translate if task == "translate" else t.transcribe, t.notimestamps], t.eot)
    opts = TranscribeOptions(
        language=language, task=task, timestamps=False, max_tokens=N_TOKENS, no_speech_threshold=None, silence_db=None
    )
    ours, _, _, lang = greedy_decode(tr.graphs, tr.graphs.encode(feats), opts, language)
    assert ours == ref
    assert t.languages[lang] == lang_id


def test_transcribe_cli(tiny_whisper_bundle, speech_fixtures):
    path = next(p for p in speech_fixtures if p.endswith(".flac"))
    proc = run_cli("transcribe", str(tiny_whisper_bundle), path, "--json", "--threads", "2")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert set(out) >= {"text", "segments", "rtf", "duration", "language"}
    assert out["duration"] == pytest.approx(3.06, abs=0.01) and out["rtf"] > 0 and out["language"] == "en"
    starts = [s["start"] for s in out["segments"]]
    assert starts == sorted(starts) and all(
        0 <= s["start"] <= s["end"] <= out["duration"] + 1e-6 for s in out["segments"]
    )
    assert out["text"] == "".join(s["text"] for s in out["segments"]).strip()
    plain = run_cli("transcribe", str(tiny_whisper_bundle), path, "--no-timestamps", "--threads", "2")
    assert plain.returncode == 0 and plain.stdout.strip()


def test_spoken_turn_in_the_python_api(tiny_llama_bundle, tiny_whisper_bundle, speech_fixtures):
    import edge
    from edge.errors import InputError
    from edge.options import GenerateOptions

    path = sorted(speech_fixtures)[1]
    heard = edge.load_speech(tiny_whisper_bundle, threads=2).transcribe(path).text
    pipe = edge.load(tiny_llama_bundle, threads=2, speech=tiny_whisper_bundle)
    assert pipe.hear("Answer briefly.", [path]) == "Answer briefly.\n" + heard
    result = pipe.generate("", options=GenerateOptions(max_tokens=4), audio=[path])
    assert result.tokens
    text_only = edge.load(tiny_llama_bundle, threads=2)
    with pytest.raises(InputError, match="no speech model"):
        text_only.generate("hi", audio=[path])


def test_audio_and_mic_commands_in_chat(tiny_llama_bundle, tiny_whisper_bundle, speech_fixtures):
    path = sorted(speech_fixtures)[1]
    proc = run_cli(
        "chat",
        str(tiny_llama_bundle),
        "--audio-bundle",
        str(tiny_whisper_bundle),
        "--max-tokens",
        "4",
        "--threads",
        "2",
        stdin=f"/audio {path}\n/audio /no/such.wav\n/quit\n",
    )
    assert proc.returncode == 0, proc.stderr
    assert "(heard: " in proc.stderr and "tokens, prefill" in proc.stderr  # the transcript was answered
    assert "error: audio file not found" in proc.stderr
    proc = run_cli("chat", str(tiny_llama_bundle), "--threads", "2", stdin=f"/audio {path}\n/mic\n/quit\n")
    assert proc.returncode == 0 and proc.stderr.count("error: no speech model") == 2


def test_progress_counts_seconds_of_audio(transcriber, speech_fixtures):
    from contextlib import contextmanager

    class Recorder:  # the edge.progress interface, keeping what it is told
        total, done = None, 0.0

        def stage(self, text):
            pass

        @contextmanager
        def bar(self, total, desc):
            self.total = total

            def advance(n=1):
                self.done += n

            yield advance

    rec = Recorder()
    path = next(p for p in speech_fixtures if p.endswith(".flac"))
    result = transcriber.transcribe(path, TranscribeOptions(timestamps=False), rec)
    assert rec.total == 4 and rec.done == pytest.approx(result.duration, abs=1e-3)
