"""Tiny random Qwen2.5-VL with video frames, against transformers (issue 15), and the vision-tower
benchmark through ``edge bench``.

transformers' ``Qwen2VLVideoProcessor`` imports torchvision, which cannot be installed next to this
torch: the pixel reference restates its ``_preprocess`` in torch (with transformers' own
``smart_resize``); ids, positions, embeddings and tokens come from the real model
(``get_rope_index``, ``visual``, ``generate``).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import run_cli
from PIL import Image

from edge.options import GenerateOptions, RuntimeOptions
from edge.runtime.pipeline import Pipeline
from edge.runtime.text.prompt import Message, render_chat

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

MERGE, GREEDY = 2, 12


@pytest.fixture(scope="module")
def hf(tiny_qwen2_5_vl_dir):
    """The tiny model and its tokenizer (as ``test_qwen2_5_vl.py`` loads them)."""
    from transformers import AutoTokenizer, Qwen2_5_VLForConditionalGeneration

    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(tiny_qwen2_5_vl_dir, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(tiny_qwen2_5_vl_dir), None


@pytest.fixture(scope="module")
def pipe(tiny_qwen2_5_vl_bundle):
    p = Pipeline(tiny_qwen2_5_vl_bundle, RuntimeOptions.simple(threads=2))
    yield p
    p.close()


# Qwen2VLVideoProcessor + Qwen2_5_VLProcessor + get_rope_index, transformers 4.57

VPAD, VIDEO = "<|video_pad|>", "<|vision_start|><|video_pad|><|vision_end|>"


def _frames(n: int, w: int, h: int, seed: int) -> list:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    return [Image.fromarray(np.roll(base, 3 * i, axis=1), "RGB") for i in range(n)]


def _video_config(tiny_qwen2_5_vl_dir) -> dict:
    return json.loads((tiny_qwen2_5_vl_dir / "video_preprocessor_config.json").read_text())


def _hf_video_pixels(frames, vc: dict) -> tuple:
    """``Qwen2VLVideoProcessor._preprocess`` restated in torch: the class itself imports
    torchvision, which cannot be installed next to this torch. Its own ``smart_resize``; the resize
    torchvision runs on a uint8 CPU tensor for bicubic (torch's native antialiased uint8
    ``interpolate``); ``rescale_and_normalize`` fused (mean and std times ``1 / rescale_factor``
    as float32 tensors, then ``sub``/``div``); the last frame repeated ``temporal_patch_size - 1``
    times when the count is odd; the ``view``/``permute``/``reshape`` of the source, axis for axis."""
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

    t_size, p, m = vc["temporal_patch_size"], vc["patch_size"], vc["merge_size"]
    video = torch.from_numpy(np.stack([np.asarray(f) for f in frames])).permute(0, 3, 1, 2).contiguous()
    h, w = video.shape[-2:]
    rh, rw = smart_resize(h, w, factor=p * m, min_pixels=vc["min_pixels"], max_pixels=vc["max_pixels"])
    if (rh, rw) != (h, w):
        video = torch.nn.functional.interpolate(video, size=(rh, rw), mode="bicubic", antialias=True)
    mean = torch.tensor(list(transformers.image_utils.OPENAI_CLIP_MEAN)) * (1.0 / (1 / 255))
    std = torch.tensor(list(transformers.image_utils.OPENAI_CLIP_STD)) * (1.0 / (1 / 255))
    x = video.to(torch.float32).sub(mean[:, None, None]).div(std[:, None, None])[None]
    if x.shape[1] % t_size:
        x = torch.cat([x, x[:, -1:].repeat(1, t_size - 1, 1, 1, 1)], dim=1)
    b, gt, c = x.shape[0], x.shape[1] // t_size, x.shape[2]
    gh, gw = rh // p, rw // p
    x = x.view(b, gt, t_size, c, gh // m, m, p, gw // m, m, p).permute(0, 1, 4, 7, 5, 8, 3, 2, 6, 9)
    return x.reshape(b * gt * gh * gw, c * t_size * p * p), torch.tensor([[gt, gh, gw]])


def _hf_video_ids(hf, text: str, grids) -> list[int]:
    """``Qwen2_5_VLProcessor.__call__``'s video expansion: each ``<|video_pad|>`` becomes
    ``video_grid_thw[i].prod() // merge_size ** 2`` pads."""
    parts = text.split(VPAD)
    text = parts[0] + "".join(VPAD * (int(g.prod()) // MERGE**2) + p for g, p in zip(grids, parts[1:]))
    return hf[1](text)["input_ids"]


def _targets(pipe, monkeypatch, text: str, videos) -> list:
    """The items the pipeline lays out for a raw prompt with videos (nothing is generated)."""
    seen = {}

    def capture(target, sampler, options, timings, t0):
        seen["target"] = target
        return iter(())

    monkeypatch.setattr(pipe, "_generate", capture)
    pipe._run(text, [], GenerateOptions(template=False), raw=True, videos=list(videos))
    monkeypatch.undo()
    return seen["target"]


def _ids_and_positions(hf, target) -> tuple[list[int], np.ndarray]:
    """Token ids (video rows written as pads) and [3, n] positions of the pipeline's items, each block's
    ids offset by the running position, which advances by the block's span (``sequence.width``)."""
    from edge.runtime.text.sequence import MediaBlock, width

    pad = hf[1].convert_tokens_to_ids(VPAD)
    ids, cols, pos = [], [], 0
    for item in target:
        if isinstance(item, MediaBlock):
            ids += [pad] * item.embeds.shape[0]
            cols.append(item.positions + pos)
        else:
            ids.append(item)
            cols.append(np.full((3, 1), pos))
        pos += width(item, "mrope")
    return ids, np.concatenate(cols, axis=1)


@pytest.mark.parametrize("n,size", [(4, (60, 44)), (3, (120, 90)), (1, (8, 200)), (6, (40, 40))])
def test_video_pixels_and_grid_match_the_processor(pipe, tiny_qwen2_5_vl_dir, n, size):
    from edge.runtime.vision.videos_qwen2vl import video_pixel_values, video_preprocess

    stage_params = pipe.manifest.vision.video
    assert stage_params.scheme == "qwen2vl"
    assert stage_params.max_pixels == _video_config(tiny_qwen2_5_vl_dir)["max_pixels"]
    frames = _frames(n, *size, seed=n)
    plan, patches = video_pixel_values(frames, stage_params, video_preprocess(pipe.scheme.params, stage_params))
    ref, grid = _hf_video_pixels(frames, _video_config(tiny_qwen2_5_vl_dir))
    assert list(plan.grid) == grid[0].tolist()
    ours = patches.reshape(-1, patches.shape[-1])
    assert ours.shape == tuple(ref.shape) and np.array_equal(ours, ref.numpy())


def test_video_embeddings_match_transformers(hf, pipe, tiny_qwen2_5_vl_dir):
    from edge.events import Timings
    from edge.video import Video

    frames = _frames(4, 60, 44, seed=21)
    pipe.reset()
    pipe._videos([Video(tuple(frames))], Timings())  # makes the stage
    enc = pipe._video_stage.encode([Video(tuple(frames))], Timings())[0]
    px, grid = _hf_video_pixels(frames, _video_config(tiny_qwen2_5_vl_dir))
    with torch.no_grad():
        ref = hf[0].model.visual(px, grid).numpy()
    assert enc.blocks[0].shape == ref.shape and float(np.abs(enc.blocks[0] - ref).max()) < 1e-4


# durations whose sampled rates give second_per_grid_t 1.0, 0.5 (truncated to 0), 1.25 (to 1) and 4.0
@pytest.mark.parametrize("n,duration", [(4, 2.0), (4, 1.0), (4, 2.5), (2, 4.0), (3, None)])
def test_video_ids_and_mrope_positions_match_get_rope_index(hf, pipe, monkeypatch, n, duration):
    from edge.video import Video

    frames = _frames(n, 60, 44, seed=30 + n)
    video = Video(tuple(frames), duration=duration)
    text = f"<|im_start|>user\nSee {VIDEO} then {VIDEO}.<|im_end|>\n<|im_start|>assistant\n"
    other = Video(tuple(_frames(2, 40, 72, seed=5)))
    target = _targets(pipe, monkeypatch, text, [video, other])
    ids, ours = _ids_and_positions(hf, target)
    _, g1 = _hf_video_pixels(frames, _video_config_of(pipe))
    _, g2 = _hf_video_pixels(other.frames, _video_config_of(pipe))
    grids = torch.cat([g1, g2])
    assert ids == _hf_video_ids(hf, text, grids)
    fps = n / duration if duration else 2.0  # qwen-vl-utils' sample_fps; the processor's 2.0 without one
    spg = torch.tensor([2 / fps, 1.0])
    ref, _ = hf[0].model.get_rope_index(torch.tensor([ids]), None, grids, spg, torch.ones(1, len(ids)))
    assert np.array_equal(ours, ref[:, 0].numpy())


def _video_config_of(pipe) -> dict:
    v, pp = pipe.manifest.vision.video, pipe.scheme.params
    sizes = {"patch_size": pp.patch_size, "merge_size": pp.merge_size, "temporal_patch_size": pp.temporal_patch_size}
    return {"min_pixels": v.min_pixels, "max_pixels": v.max_pixels, **sizes}


def _generate_video(hf, text: str, videos, fps_list) -> list[int]:
    pxs, grids = zip(*[_hf_video_pixels(v.frames, _video_config_of_hf(hf)) for v in videos])
    x = torch.tensor([_hf_video_ids(hf, text, torch.cat(grids))])
    spg = torch.tensor([2 / f for f in fps_list])
    with torch.no_grad():
        out = hf[0].generate(
            input_ids=x,
            attention_mask=torch.ones_like(x),
            pixel_values_videos=torch.cat(pxs),
            video_grid_thw=torch.cat(grids),
            second_per_grid_ts=spg,
            max_new_tokens=GREEDY,
            do_sample=False,
        )
    return out[0, x.shape[1] :].tolist()


def _video_config_of_hf(hf) -> dict:
    return hf[3]


@pytest.fixture(scope="module")
def hfv(hf, tiny_qwen2_5_vl_dir):
    return (*hf, _video_config(tiny_qwen2_5_vl_dir))


def test_greedy_tokens_with_video_frames(hfv, pipe):
    from edge.video import Video

    pipe.reset()
    clip = Video(tuple(_frames(4, 60, 44, seed=40)), timestamps=(0.0, 0.5, 1.0, 1.5), duration=2.0)
    odd = Video(tuple(_frames(3, 48, 64, seed=41)))  # padded to 4 frames, as the processor does
    text = f"<|im_start|>user\n{VIDEO}{VIDEO}What changes?<|im_end|>\n<|im_start|>assistant\n"
    r = pipe.generate(text, options=GenerateOptions(template=False, max_tokens=GREEDY), videos=[clip, odd])
    assert r.tokens == _generate_video(hfv, text, [clip, odd], [2.0, 2.0])
    assert r.timings.image_tokens == 2 * 2 * 48  # two videos of 2 groups of 6 x 8 merged rows


def test_greedy_tokens_video_through_the_chat_template(hfv, pipe):
    from edge.video import Video

    pipe.reset()
    clip = Video(tuple(_frames(2, 60, 44, seed=42)))
    msgs = [Message("user", "Describe the clip.", (), (clip,))]
    text = render_chat(pipe.manifest.llm, pipe.manifest.prompt, msgs)
    assert text.count(VIDEO) == 1
    r = pipe.generate("Describe the clip.", options=GenerateOptions(max_tokens=GREEDY), videos=[clip])
    assert r.tokens == _generate_video(hfv, text, [clip], [2.0])


def test_video_in_a_later_chat_turn_reuses_the_kv_prefix(hfv, pipe):
    """Turn 1 text, turn 2 a video, turn 3 text: each answer is transformers' on the whole history,
    and later turns reuse the cached prefix (the video block with its M-RoPE ids included)."""
    from edge.video import Video

    pipe.reset()
    clip = Video(tuple(_frames(4, 60, 44, seed=43)), duration=2.0)
    chat = pipe.chat()
    msgs: list[Message] = []
    for i, (text, videos) in enumerate([("Hello.", ()), ("Watch this.", (clip,)), ("And then?", ())]):
        result = None
        for ev in chat.send(text, options=GenerateOptions(max_tokens=GREEDY), videos=videos):
            result = ev
        msgs.append(Message("user", text, (), videos))
        rendered = render_chat(pipe.manifest.llm, pipe.manifest.prompt, msgs)
        all_videos = [v for m in msgs for v in m.videos]
        expected = _generate_video(hfv, rendered, all_videos, [2.0] * len(all_videos)) if all_videos else None
        if expected is not None:
            assert result.tokens == expected, f"turn {i}"
        if i:
            assert result.timings.reused_tokens > 0, f"turn {i} reused nothing"
        msgs.append(Message("assistant", result.text))
    # the video's block was kept, not evaluated again: the reused positions reach past it
    from edge.runtime.text.sequence import MediaBlock, width

    at = next(i for i, x in enumerate(pipe._seq) if isinstance(x, MediaBlock))
    assert result.timings.reused_tokens > sum(width(x, "mrope") for x in pipe._seq[: at + 1])


def _write_video(path, n: int = 20, fps: float = 10.0) -> None:
    cv2 = pytest.importorskip("cv2")
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (64, 48))
    for i in range(n):
        frame = np.zeros((48, 64, 3), np.uint8)
        frame[:] = (i * 12, 255 - i * 12, (i * 37) % 255)
        frame[10:30, i * 2 : i * 2 + 10] = 255
        writer.write(frame)
    writer.release()


def test_cli_video_frames_and_bad_frame_counts(tiny_qwen2_5_vl_bundle, tmp_path):
    from edge.runtime.vision.video_io import VideoReader
    from edge.runtime.vision.videos_qwen2vl import sample_qwen2vl

    path = tmp_path / "clip.avi"
    _write_video(path)
    base = ("run", str(tiny_qwen2_5_vl_bundle), "--video", str(path), "--prompt", "What happens?")
    proc = run_cli(*base, "--frames", "4", "--max-tokens", "3", "--threads", "2", "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["timings"]["image_tokens"] == 2 * 48 and len(out["tokens"]) == 3  # 4 frames: 2 groups of 6 x 8 rows
    # the pipeline's answer on the same sampled frames is the CLI's
    other = Pipeline(tiny_qwen2_5_vl_bundle, RuntimeOptions.simple(threads=2))
    try:
        video = sample_qwen2vl(str(path), other.manifest.vision.video, 2, 4)
        assert video.timestamps == (0.0, 0.5, 1.0, 1.5)  # arange(0, 20, 5): frames 0, 5, 10, 15 at 10 fps
        r = other.generate("What happens?", options=GenerateOptions(max_tokens=3), videos=[video])
        assert r.tokens == out["tokens"]
        by_rate = other.generate("What happens?", options=GenerateOptions(max_tokens=1), videos=[str(path)])
        assert by_rate.timings.image_tokens == 2 * 48  # 2 s at fps 2: 4 frames
    finally:
        other.close()
    VideoReader(str(path)).close()
    for frames, words in (("1", "groups of 2"), ("40", "cannot sample 40 frames")):
        bad = run_cli(*base, "--frames", frames, "--max-tokens", "1")
        assert bad.returncode != 0 and words in bad.stderr and "Traceback" not in bad.stderr, bad.stderr
        assert len(bad.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_edge_bench_runs_the_vision_tower_benchmark(tmp_path):
    """``edge bench --qwen2vl-vision --quick``: the 3B-shaped tower (2 of its 32 blocks) at 448x448,
    ours at f32 and int8 next to transformers eager."""
    proc = run_cli("bench", "--qwen2vl-vision", "--quick", "--json", "--threads", "2", "--work", str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    entry = report["sizes"]["448x448"]
    assert report["depth"] == 2 and entry["grid"] == [1, 32, 32] and entry["rows"] == 256
    assert all(entry[f"{k}_ms"] > 0 for k in ("hf-eager", "onnx-f32", "onnx-int8"))
    assert entry["onnx-f32_cosine_vs_hf"] > 0.9999 and entry["onnx-int8_cosine_vs_hf"] > 0.99
