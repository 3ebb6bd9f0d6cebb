"""Bad audio through the CLI: one-line errors and exit code 2, or bounded work; never a crash.

Also a 3-hour file: it streams through 30 s windows, so memory stays bounded."""

from __future__ import annotations

import json
import os
import struct
import sys
import wave
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import run_cli

THREE_HOURS = 3 * 3600


def _wav_header(rate: int, frames: int, channels: int = 1, bits: int = 16) -> bytes:
    block = channels * bits // 8
    data = frames * block
    return (
        b"RIFF"
        + struct.pack("<I", 36 + data)
        + b"WAVE"
        + b"fmt "
        + struct.pack("<IHHIIHH", 16, 1, channels, rate, rate * block, block, bits)
        + b"data"
        + struct.pack("<I", data)
    )


@pytest.fixture(scope="module")
def bad_audio(tmp_path_factory, speech_fixtures) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("bad_audio")
    (d / "empty.wav").write_bytes(b"")
    (d / "text.wav").write_text("this is not audio\n" * 20)
    (d / "random.flac").write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    with wave.open(str(d / "zero_frames.wav"), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(16000)
    (d / "rate_zero.wav").write_bytes(_wav_header(0, 1600) + bytes(3200))
    (d / "rate_4hz.wav").write_bytes(_wav_header(4, 1600) + bytes(3200))
    x = np.zeros(16000, np.float32)
    x[8000] = np.nan
    sf.write(d / "nan.wav", x, 16000, subtype="FLOAT")
    flac = next(p for p in speech_fixtures if p.endswith(".flac"))
    (d / "truncated.flac").write_bytes(Path(flac).read_bytes()[:20000])
    # 3 hours of 16 kHz silence: a sparse file, so the test costs no disk
    frames = THREE_HOURS * 16000
    with open(d / "three_hours.wav", "wb") as f:
        f.write(_wav_header(16000, frames))
        f.truncate(44 + frames * 2)
    return {p.stem: p for p in d.iterdir()} | {"missing": d / "missing.wav", "directory": d}


def _clean_error(proc, contains: str):
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = [l for l in proc.stderr.strip().splitlines() if l.strip()]
    assert lines[-1].startswith("error: ") and contains.lower() in lines[-1].lower(), proc.stderr
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr
    assert proc.stdout == ""


@pytest.mark.parametrize(
    "name,contains",
    [
        ("missing", "not found"),
        ("directory", "not an audio file"),
        ("empty", "empty"),
        ("text", "cannot read"),
        ("random", "cannot read"),
        ("zero_frames", "no audio samples"),
        ("rate_zero", "audio"),
        ("rate_4hz", "sample rate"),
        ("nan", "nan"),
    ],
)
def test_bad_audio_is_a_clean_error(tiny_whisper_bundle, bad_audio, name, contains):
    proc = run_cli("transcribe", str(tiny_whisper_bundle), str(bad_audio[name]), "--threads", "2")
    _clean_error(proc, contains)


def test_truncated_file_transcribes_what_is_there(tiny_whisper_bundle, bad_audio):
    proc = run_cli("transcribe", str(tiny_whisper_bundle), str(bad_audio["truncated"]), "--json", "--threads", "2")
    if proc.returncode:  # libsndfile may also refuse it: then as a clean error
        _clean_error(proc, "")
    else:
        assert 0 < json.loads(proc.stdout)["duration"] < 3.0


def test_three_hours_stream_in_bounded_memory(tiny_whisper_bundle, bad_audio):
    # run the CLI in a process that reports its own peak memory (VmHWM: ru_maxrss would count
    # the forking test process too, as Linux keeps it across exec)
    import subprocess

    code = (
        "import sys; from edge.apps.cli import main; rc = main(sys.argv[1:]); "
        "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]; "
        "print('peak_kb', hwm, file=sys.stderr); sys.exit(rc)"
    )

    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            "transcribe",
            str(tiny_whisper_bundle),
            str(bad_audio["three_hours"]),
            "--json",
            "--threads",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["duration"] == pytest.approx(THREE_HOURS) and out["segments"] == []  # silence: no words
    peak_mb = int(proc.stderr.split("peak_kb")[1].split()[0]) / 1024
    # the samples alone would be 660 MB as float32; streamed, the process stays small
    assert peak_mb < 400, peak_mb


def test_options_and_bundles_that_do_not_fit(tiny_whisper_bundle, tiny_llama_bundle, speech_fixtures):
    path = next(iter(speech_fixtures))
    _clean_error(run_cli("transcribe", str(tiny_whisper_bundle), path, "--task", "translate"), "English-only")
    _clean_error(run_cli("transcribe", str(tiny_whisper_bundle), path, "--language", "de"), "English-only")
    _clean_error(run_cli("transcribe", str(tiny_whisper_bundle), path, "--task", "sing"), "task")
    _clean_error(run_cli("transcribe", str(tiny_llama_bundle), path), "no speech model")
    _clean_error(run_cli("run", str(tiny_whisper_bundle), "--prompt", "hi"), "no language model")
    _clean_error(run_cli("listen", str(tiny_whisper_bundle), "--on-lag", "later"), "lag policy")
    _clean_error(run_cli("listen", str(tiny_whisper_bundle), "--step", "5", "--length", "2"), "step")


@pytest.mark.parametrize(
    "missing, says",
    [
        ("raise ImportError('No module named sounddevice')", "the sounddevice package"),
        ("raise OSError('PortAudio library not found')", "PortAudio"),
    ],
)
def test_listen_without_a_microphone_library_says_so(tiny_whisper_bundle, tmp_path, missing, says):
    # whatever this machine has, the CLI sees a `sounddevice` that fails to import the way a
    # machine without the package, or without the PortAudio library, makes it fail
    (tmp_path / "sounddevice.py").write_text(missing + "\n")
    path = os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))
    proc = run_cli("listen", str(tiny_whisper_bundle), env={"PYTHONPATH": path})
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 5 and last.startswith("error: the microphone needs") and says in last, proc.stderr
    assert "Traceback" not in proc.stderr


def test_listen_replays_a_file(tiny_whisper_bundle, speech_fixtures):
    path = next(p for p in speech_fixtures if p.endswith(".flac"))
    proc = run_cli("listen", str(tiny_whisper_bundle), "--file", path, "--json", "--threads", "2")
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(events) == 1 and events[0]["final"] and 0.0 <= events[0]["start"] < events[0]["end"] <= 3.1
