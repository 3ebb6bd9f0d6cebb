"""The ``qwen2vl`` video parameters in the contract and the frame sampling of
``Qwen2VLVideoProcessor.sample_frames`` (transformers 4.57), checked against torch's arithmetic."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest

from edge.errors import BundleError, InputError
from edge.manifest import Manifest, VisionSpec
from edge.qwen2vl_video import Qwen2VLVideo
from edge.runtime.vision.videos_qwen2vl import sample_indices_qwen2vl
from edge.video import VideoFrames

torch = pytest.importorskip("torch")


def _hf_indices(total: int, video_fps: float, num_frames, fps, p: Qwen2VLVideo, temporal: int = 2) -> list[int]:
    """``Qwen2VLVideoProcessor.sample_frames`` restated (its module imports torchvision, which cannot
    be installed here): the same branches, and torch's ``arange(...).int()`` for the indices."""
    if num_frames is not None:
        num_frames = round(num_frames / temporal) * temporal
    else:
        max_frames = math.floor(min(p.max_frames, total) / temporal) * temporal
        num_frames = total / video_fps * fps
        num_frames = min(min(max(num_frames, p.min_frames), max_frames), total)
        num_frames = math.floor(num_frames / temporal) * temporal
    if num_frames > total:
        raise ValueError("too many")
    return torch.arange(0, total, total / num_frames).int().tolist()


@pytest.mark.parametrize("total", [2, 3, 7, 10, 25, 31, 97, 240, 1001])
@pytest.mark.parametrize("num_frames", [2, 3, 4, 5, 8, 16, None])
@pytest.mark.parametrize("video_fps", [10.0, 24.0, 29.97])
def test_sampled_indices_match_the_processor(total, num_frames, video_fps):
    p = Qwen2VLVideo(max_frames=64)
    try:
        ref = _hf_indices(total, video_fps, num_frames, p.fps, p)
    except (ValueError, ZeroDivisionError):
        with pytest.raises(InputError):
            sample_indices_qwen2vl(total, video_fps, p, 2, num_frames)
        return
    assert sample_indices_qwen2vl(total, video_fps, p, 2, num_frames) == ref


def test_bad_frame_counts_are_clear():
    p = Qwen2VLVideo()
    with pytest.raises(InputError, match="groups of 2"):
        sample_indices_qwen2vl(30, 10.0, p, 2, 1)
    with pytest.raises(InputError, match="cannot sample 12 frames from a video of 10"):
        sample_indices_qwen2vl(10, 10.0, p, 2, 12)
    with pytest.raises(InputError, match="needs at least 2"):
        sample_indices_qwen2vl(1, 10.0, p, 2)
    with pytest.raises(InputError, match="bilinear and bicubic only"):
        Qwen2VLVideo(resample="lanczos")


def test_processor_config_reading():
    d = {"min_pixels": 1000, "max_pixels": 9000, "size": {"shortest_edge": 1, "longest_edge": 2}, "fps": 1.0}
    p = Qwen2VLVideo.from_processor_config(d)
    assert (p.min_pixels, p.max_pixels, p.fps, p.resample) == (1000, 9000, 1.0, "bicubic")
    q = Qwen2VLVideo.from_processor_config({"size": {"shortest_edge": 3136, "longest_edge": 12845056}})
    assert (q.min_pixels, q.max_pixels, q.fps, q.max_frames) == (3136, 12845056, 2.0, 768)


@pytest.mark.parametrize("video", [Qwen2VLVideo(max_pixels=500000), VideoFrames(), None])
def test_vision_video_is_a_tagged_union_in_the_manifest(video):
    from test_manifest import _manifest

    m = _manifest()
    m = dataclasses.replace(m, files={}, vision=dataclasses.replace(m.vision, video=video))
    again = Manifest.from_json(m.to_json())
    assert again == m and type(again.vision.video) is type(video)
    if video is not None:
        data = json.loads(m.to_json())
        data["vision"]["video"]["scheme"] = "nope"
        with pytest.raises(BundleError, match="vision.video.scheme must be one of"):
            Manifest.from_json(json.dumps(data))
    assert isinstance(m.vision, VisionSpec)
