"""Tiny random SmolVLM2 (``SmolVLMForConditionalGeneration``, f32) against transformers: images through
the idefics3 scheme, videos as frames laid out as ``SmolVLMProcessor`` lays them out.

The processor reference is transformers' own code (``smolvlm_support``: its prompt expansion, chat
template, frame sampling and OpenCV reader; the video pixels with torchvision's uint8 resize spelled
as the ``interpolate`` call it makes, since torchvision itself cannot be installed next to the pinned
CPU torch). Measured: pixel values and input ids bit-identical on every case below.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import run_cli
from PIL import Image
from smolvlm_support import expand_images, expand_video, processing_module, read_video, video_pixels

from edge.runtime.text.prompt import expand_videos
from edge.video import Video, VideoFrames

N_TOKENS = 12
SIZES = [(1, 1), (1, 500), (500, 1), (2, 3), (3, 2), (31, 31), (32, 32), (33, 33), (64, 32), (32, 64), (95, 96),
         (96, 96), (97, 96), (96, 97), (63, 65), (65, 63), (128, 128), (129, 64), (100, 7), (7, 100), (17, 999),
         (999, 17), (47, 61), (61, 47), (90, 120), (120, 90), (160, 96), (96, 160), (191, 192), (192, 191),
         (255, 1), (1, 255), (300, 200), (200, 300), (640, 480), (480, 640), (1001, 999), (4096, 3), (3, 4096),
         (64, 64), (48, 80), (80, 48)]  # fmt: skip


@pytest.fixture(scope="module")
def ref(tiny_smolvlm_dir):
    """(model, tokenizer, image processor, checkpoint config dict) of the tiny checkpoint."""
    from transformers import AutoTokenizer, SmolVLMForConditionalGeneration, SmolVLMImageProcessor

    model = SmolVLMForConditionalGeneration.from_pretrained(tiny_smolvlm_dir).eval()
    tok = AutoTokenizer.from_pretrained(tiny_smolvlm_dir)
    ip = SmolVLMImageProcessor.from_pretrained(tiny_smolvlm_dir)
    pc = json.loads((tiny_smolvlm_dir / "preprocessor_config.json").read_text())
    return model, tok, ip, pc


@pytest.fixture(scope="module")
def pipe(tiny_smolvlm_bundle):
    import edge

    return edge.load(tiny_smolvlm_bundle, threads=2)


def _image(w, h):
    rng = np.random.default_rng(w * 7919 + h)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


def _seq(pipe) -> int:
    return pipe.manifest.vision.tokens_per_image


def _vp(pc) -> dict:
    return {
        "longest_edge": pc["size"]["longest_edge"],
        "frame_size": pc["max_image_size"]["longest_edge"],
        "mean": pc["image_mean"],
        "std": pc["image_std"],
        "rescale_factor": pc["rescale_factor"],
    }


def _expand_ours(text: str, layout, seq: int) -> str:
    return "".join(p if isinstance(p, str) else "<image>" * seq for p in layout)


def test_bundle_declares_video_and_the_processors_template(pipe):
    m = pipe.manifest
    assert m.family == "smolvlm" and m.vision.preprocess.scheme == "idefics3"
    assert m.prompt.video_marker == "<video>"
    assert m.prompt.video_chat_template == processing_module().DEFAULT_CHAT_TEMPLATE
    assert m.vision.video == VideoFrames(
        max_frames=8, longest_edge=96, frame_size=32, rescale_factor=m.vision.video.rescale_factor
    )
    assert m.provenance["parity"]["vision_max_abs_diff"] <= 1e-4


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_image_pixels_and_ids_match_the_processor(ref, pipe, size):
    _, tok, ip, _ = ref
    img = _image(*size)
    hf = ip(images=[[img]], return_tensors="np", return_row_col_info=True, input_data_format="channels_last")
    plan = pipe.scheme.plan(img, _budget())
    assert plan.pixel_values.shape == hf["pixel_values"][0].shape
    assert np.abs(plan.pixel_values - hf["pixel_values"][0]).max() == 0.0
    text = "User:<image>Describe it."
    want = tok(expand_images(text, hf["rows"][0], hf["cols"][0], _seq(pipe)))["input_ids"]
    layout, _ = pipe.scheme.layout(np.zeros((plan.pixel_values.shape[0], 1, 1), np.float32), plan)
    got = tok("User:" + _expand_ours(text, layout, _seq(pipe)) + "Describe it.")["input_ids"]
    assert got == want


def _budget():
    from edge.options import Budget

    return Budget()


def test_vision_embeddings_match_transformers(ref, pipe):
    model = ref[0]
    plan = pipe.scheme.plan(_image(90, 120), _budget())
    ours = pipe.vision(plan.pixel_values)
    with torch.no_grad():
        theirs = model.get_image_features(pixel_values=torch.from_numpy(plan.pixel_values)[None]).numpy()
    assert np.abs(np.asarray(ours) - theirs.reshape(np.asarray(ours).shape)).max() < 1e-4


def _generate(model, tok, text, **vision):
    ids = tok(text, return_tensors="pt")
    ids.pop("token_type_ids", None)
    with torch.no_grad():
        out = model.generate(**ids, **vision, max_new_tokens=N_TOKENS, do_sample=False)
    return out[0, ids["input_ids"].shape[1] :].tolist(), ids["input_ids"].shape[1]


def _image_reference(ref, pipe, images):
    model, tok, ip, _ = ref
    content = [{"type": "image"}] * len(images) + [{"type": "text", "text": "Describe the pictures."}]
    text = tok.apply_chat_template([{"role": "user", "content": content}], tokenize=False, add_generation_prompt=True)
    hf = ip(images=[images], return_tensors="pt", return_row_col_info=True, input_data_format="channels_last")
    text = expand_images(text, hf["rows"][0], hf["cols"][0], _seq(pipe))
    return _generate(model, tok, text, pixel_values=hf["pixel_values"], pixel_attention_mask=hf["pixel_attention_mask"])


@pytest.mark.parametrize("size", [(90, 120), (200, 60), (33, 33), (20, 300)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_greedy_tokens_with_an_image(ref, pipe, size):
    from edge.options import GenerateOptions

    img = _image(*size)
    want, n_prompt = _image_reference(ref, pipe, [img])
    got = pipe.generate("Describe the pictures.", [img], GenerateOptions(max_tokens=N_TOKENS))
    assert got.timings.prompt_tokens == n_prompt
    assert got.tokens == want


def test_greedy_tokens_with_two_images(ref, pipe):
    from edge.options import GenerateOptions

    imgs = [_image(90, 120), _image(40, 30)]
    want, n_prompt = _image_reference(ref, pipe, imgs)
    got = pipe.generate("Describe the pictures.", imgs, GenerateOptions(max_tokens=N_TOKENS))
    assert got.timings.prompt_tokens == n_prompt and got.tokens == want


def _frames(n, w, h, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    return np.stack([np.roll(base, 3 * i, axis=1) for i in range(n)])


@pytest.mark.parametrize("n,w,h", [(1, 1, 1), (3, 80, 48), (4, 48, 80), (2, 500, 3), (2, 3, 500), (5, 96, 96),
                                   (3, 97, 31), (2, 200, 150), (8, 64, 36)])  # fmt: skip
def test_video_frame_pixels_match_the_video_processor(ref, pipe, n, w, h):
    from edge.runtime.vision.videos import frame_pixel_values

    frames = _frames(n, w, h, seed=n * w + h)
    want = video_pixels(frames, _vp(ref[3]))
    got = frame_pixel_values([Image.fromarray(f) for f in frames], pipe.manifest.vision.video)
    assert got.dtype == np.float32 and got.shape == want.shape
    assert np.abs(got - want).max() == 0.0


def _video_text(tok, question):
    content = [{"type": "video"}, {"type": "text", "text": question}]
    return tok.apply_chat_template(
        [{"role": "user", "content": content}],
        chat_template=processing_module().DEFAULT_CHAT_TEMPLATE,
        tokenize=False,
        add_generation_prompt=True,
    )


def _video_reference(ref, pipe, frames, metadata, question="What happens?"):
    model, tok, _, pc = ref
    text = expand_video(_video_text(tok, question), len(frames), metadata, _seq(pipe))
    px = torch.from_numpy(video_pixels(frames, _vp(pc)))[None]
    return _generate(model, tok, text, pixel_values=px, pixel_attention_mask=torch.ones(px.shape[:2] + px.shape[3:]))


@pytest.mark.parametrize("times", [None, (0.0, 1.5, 61.0, 125.9)])
def test_video_ids_match_the_processor(ref, pipe, times):
    from transformers.video_utils import VideoMetadata

    from edge.runtime.vision.videos import video_layout

    _, tok, _, _ = ref
    frames = _frames(4, 48, 40)
    video = Video(tuple(frames), times, duration=130.2 if times else None)
    if times:  # frames sampled at 10 fps: indices / fps are the times
        md = VideoMetadata(total_num_frames=1302, fps=10.0, duration=130.2, frames_indices=[int(t * 10) for t in times])
    else:  # frames without metadata: transformers' own fallback
        md = VideoMetadata(total_num_frames=4, fps=None, duration=None, frames_indices=[0, 1, 2, 3])
    text = _video_text(tok, "What happens?")
    want = tok(expand_video(text, 4, md, _seq(pipe)))["input_ids"]
    layout = video_layout(video, pipe.manifest.vision.video, pipe.scheme.frame_layout)
    expanded = expand_videos(text, pipe.manifest.prompt, [layout]).replace("\ue001", "")
    for i in range(4):
        expanded = expanded.replace(f"\ue0000.{i}", "<image>" * _seq(pipe))
    assert tok(expanded)["input_ids"] == want


def test_greedy_tokens_with_a_video(ref, pipe):
    from transformers.video_utils import VideoMetadata

    from edge.options import GenerateOptions

    frames = _frames(5, 80, 48, seed=3)
    times = (0.0, 2.0, 4.0, 6.0, 8.0)
    md = VideoMetadata(total_num_frames=225, fps=25.0, duration=9.0, frames_indices=[0, 50, 100, 150, 200])
    want, n_prompt = _video_reference(ref, pipe, frames, md)
    video = Video(tuple(frames), times, duration=9.0)
    got = pipe.generate("What happens?", options=GenerateOptions(max_tokens=N_TOKENS), videos=[video])
    assert got.timings.prompt_tokens == n_prompt
    assert got.tokens == want


def test_a_video_in_a_chat_turn(pipe):
    from edge.options import GenerateOptions

    chat = pipe.chat()
    first = list(chat.send("What happens?", videos=[list(_frames(3, 40, 40))], options=GenerateOptions(max_tokens=3)))
    second = list(chat.send("And then?", options=GenerateOptions(max_tokens=3)))
    assert first[-1].timings.tiles == 3 and second[-1].timings.reused_tokens > first[-1].timings.prompt_tokens // 2
    assert second[-1].timings.tiles == 0  # the video in the history comes from the cache


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    import cv2

    path = tmp_path_factory.mktemp("video") / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 4.0, (80, 48))
    for i in range(20):
        frame = np.zeros((48, 80, 3), np.uint8)
        frame[:] = (i * 12, 255 - i * 12, (i * 37) % 255)
        frame[10:30, i * 3 : i * 3 + 10] = 255
        writer.write(frame)
    writer.release()
    return path


@pytest.mark.slow
def test_video_file_through_the_cli(ref, pipe, tiny_smolvlm_bundle, clip):
    frames, md = read_video(str(clip), num_frames=4, fps=pipe.manifest.vision.video.fps)
    want, n_prompt = _video_reference(ref, pipe, frames, md)
    proc = run_cli(
        "run", str(tiny_smolvlm_bundle), "--video", str(clip), "--frames", "4", "--prompt", "What happens?",
        "--max-tokens", str(N_TOKENS), "--json",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["timings"]["tiles"] == len(frames) == 4
    assert out["timings"]["prompt_tokens"] == n_prompt
    assert out["tokens"] == want


def test_no_template_prompt_with_a_video_marker(ref, pipe):
    """A prompt written for transformers (``<video>`` in place) runs unchanged with --no-template."""
    from transformers.video_utils import VideoMetadata

    from edge.options import GenerateOptions

    model, tok, _, pc = ref
    frames = _frames(2, 40, 30, seed=9)
    raw = "<|im_start|>User: <video>Which colour?<end_of_utterance>\nAssistant:"
    md = VideoMetadata(total_num_frames=2, fps=None, duration=None, frames_indices=[0, 1])
    text = expand_video(raw, 2, md, _seq(pipe))
    px = torch.from_numpy(video_pixels(frames, _vp(pc)))[None]
    want, n_prompt = _generate(model, tok, text, pixel_values=px, pixel_attention_mask=torch.ones(1, 2, 32, 32))
    got = pipe.generate(raw, options=GenerateOptions(max_tokens=N_TOKENS, template=False), videos=[list(frames)])
    assert got.timings.prompt_tokens == n_prompt and got.tokens == want


def test_no_template_prompt_with_an_image_marker(ref, pipe):
    from edge.options import GenerateOptions

    model, tok, ip, _ = ref
    img = _image(70, 50)
    raw = "<|im_start|>User:<image>What is it?<end_of_utterance>\nAssistant:"
    hf = ip(images=[[img]], return_tensors="pt", return_row_col_info=True, input_data_format="channels_last")
    text = expand_images(raw, hf["rows"][0], hf["cols"][0], _seq(pipe))
    vision = {"pixel_values": hf["pixel_values"], "pixel_attention_mask": hf["pixel_attention_mask"]}
    want, n_prompt = _generate(model, tok, text, **vision)
    got = pipe.generate(raw, [img], GenerateOptions(max_tokens=N_TOKENS, template=False))
    assert got.timings.prompt_tokens == n_prompt and got.tokens == want


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--frames", "0"], "--frames"),
        (["--frames", "-3"], "--frames"),
        (["--video", "NOT_A_VIDEO"], "video"),
        (["--video", "MISSING"], "no such video file"),
    ],
)
def test_bad_video_input(tiny_smolvlm_bundle, clip, tmp_path, args, needle):
    bad = tmp_path / "bad.mp4"
    bad.write_text("not a video")
    args = [str(bad) if a == "NOT_A_VIDEO" else str(tmp_path / "none.mp4") if a == "MISSING" else a for a in args]
    if "--video" not in args:
        args = ["--video", str(clip), *args]
    proc = run_cli("run", str(tiny_smolvlm_bundle), "--prompt", "hi", *args)
    err = proc.stderr.strip()
    assert proc.returncode == 2 and err.startswith("error:") and len(err.splitlines()) == 1, err
    assert needle in err and "Traceback" not in err


def test_video_to_a_family_without_video(tiny_idefics3_bundle, clip):
    proc = run_cli("run", str(tiny_idefics3_bundle), "--video", str(clip), "--prompt", "hi")
    err = proc.stderr.strip()
    assert proc.returncode == 2 and len(err.splitlines()) == 1 and "cannot take video" in err, err


def test_video_marker_count_must_match(pipe):
    from edge.errors import InputError
    from edge.options import GenerateOptions

    with pytest.raises(InputError, match="video placeholder"):
        pipe.generate("no marker here", options=GenerateOptions(template=False), videos=[list(_frames(1, 8, 8))])


@pytest.mark.parametrize("total,rate", [(20, 4.0), (1, 30.0), (3, 25.0), (1000, 10.0), (7200, 24.0), (95, 29.97)])
@pytest.mark.parametrize("num_frames,fps", [(4, 1.0), (8, 1.0), (64, 1.0), (3, 0.5), (16, 2.0)])
def test_frame_sampling_matches_the_video_processor(total, rate, num_frames, fps):
    from smolvlm_support import sample_frames_fn
    from transformers.video_utils import VideoMetadata

    from edge.runtime.vision.videos import sample_indices

    md = VideoMetadata(total_num_frames=total, fps=rate, duration=total / rate)
    want = sample_frames_fn()(None, md, num_frames=num_frames, fps=fps).tolist()
    assert sample_indices(total, rate, num_frames, fps, skip_secs=1.0) == want
