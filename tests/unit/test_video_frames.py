"""The video pieces that need no model: frame-count words, torch's uint8 resize, frame sampling,
prompt expansion of the video marker, and the Video input type."""

from __future__ import annotations

import numpy as np
import pytest

from edge.errors import InputError
from edge.manifest import PromptLayout
from edge.runtime.text.prompt import VideoSlot, expand_videos, split_prompt
from edge.runtime.vision.resize_aa import resize_uint8
from edge.runtime.vision.videos import number_words, sample_indices
from edge.video import Video, VideoFrames


def test_number_words_match_num2words():
    num2words = pytest.importorskip("num2words").num2words
    for n in range(1000):
        assert number_words(n) == num2words(n), n
    with pytest.raises(InputError):
        number_words(1000)


@pytest.mark.parametrize("kernel", ["bicubic", "bilinear"])
def test_resize_is_torchs_uint8_antialiased_interpolate(kernel):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    cases = [((1, 1), (5, 3)), ((7, 300), (2, 40)), ((300, 7), (50, 50)), ((37, 53), (20, 30)), ((64, 64), (64, 32)),
             ((48, 80), (96, 58)), ((500, 3), (96, 2)), ((31, 97), (32, 32)), ((120, 90), (32, 32))]  # fmt: skip
    for (h, w), (ow, oh) in cases:
        a = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        t = torch.from_numpy(a).permute(2, 0, 1)[None].contiguous()
        ref = torch.nn.functional.interpolate(t, size=(oh, ow), mode=kernel, antialias=True, align_corners=False)
        np.testing.assert_array_equal(resize_uint8(a, (ow, oh), kernel), ref[0].permute(1, 2, 0).numpy())
    with pytest.raises(InputError):
        resize_uint8(np.zeros((2, 2, 3), np.uint8), (1, 1), "lanczos")


def test_sample_indices_plain_and_with_a_rate():
    assert sample_indices(20, 4.0, 4) == [0, 6, 12, 19]
    assert sample_indices(3, 4.0, 8) == [0, 1, 2]  # fewer frames than asked
    assert sample_indices(20, 4.0, 8, fps=1.0) == [0, 4, 9, 14, 19]  # round(1 frame/s * 5 s) = 5 frames (of 8)
    assert sample_indices(1000, 10.0, 4, fps=1.0, skip_secs=1.0) == [10, 336, 663, 990]  # long: 1 s off each end
    with pytest.raises(InputError):
        sample_indices(20, 4.0, 0)


def test_expand_videos_and_split():
    layout = PromptLayout(video_marker="<video>")
    text = expand_videos("A <video> B <image> C", layout, [["intro ", 0, " mid ", 1, " end"]])
    chunks = split_prompt(text, layout, 1, lambda s, bos: [s] if s else [], False)
    kinds = [c if isinstance(c, list) else type(c).__name__ for c in chunks]
    assert kinds == [["A intro "], "VideoSlot", [" mid "], "VideoSlot", [" end B "], "ImageSlot", [" C"]]
    assert chunks[3] == VideoSlot(0, 1)
    with pytest.raises(InputError, match="video placeholder"):
        expand_videos("no marker", layout, [["x", 0]])
    with pytest.raises(InputError, match="cannot take video"):
        expand_videos("<video>", PromptLayout(), [["x", 0]])


def test_video_and_its_parameters_are_checked():
    with pytest.raises(InputError):
        Video(())
    with pytest.raises(InputError):
        Video((np.zeros((2, 2, 3), np.uint8),), timestamps=(0.0, 1.0))
    with pytest.raises(InputError):
        Video.of("clip.mp4")
    assert len(Video.of([np.zeros((2, 2, 3), np.uint8)] * 2).frames) == 2
    with pytest.raises(InputError):
        VideoFrames(resample="lanczos")
    with pytest.raises(InputError):
        VideoFrames(max_frames=0)
