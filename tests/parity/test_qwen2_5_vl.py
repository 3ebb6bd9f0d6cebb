"""Tiny random Qwen2.5-VL: the exported bundle against transformers.

Vision embeddings at f32 for several grids from one graph, the window/rotary inputs against HF's
own ``get_window_index``/``rot_pos_emb``, prompt ids against the processor's expansion, greedy
tokens against ``generate`` (one image, two images of different sizes, an image in a later chat
turn with the KV prefix reused), and clear errors for bad input.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from conftest import run_cli
from PIL import Image

from edge.errors import BundleError, InputError
from edge.options import Budget, GenerateOptions, RuntimeOptions
from edge.runtime.pipeline import Pipeline
from edge.runtime.text.prompt import Message, render_chat
from edge.runtime.vision.slice_qwen2vl import patch_positions, vision_inputs, window_index

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

PAD, MERGE = "<|image_pad|>", 2
GREEDY = 12
SIZES = [(64, 48), (40, 90), (123, 77), (8, 200)]  # width, height: tiny grid, tall, odd, extreme


def _image(w: int, h: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB")


@pytest.fixture(scope="module")
def hf(tiny_qwen2_5_vl_dir):
    from transformers import AutoTokenizer, Qwen2_5_VLForConditionalGeneration
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor

    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(tiny_qwen2_5_vl_dir, dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(tiny_qwen2_5_vl_dir)
    return model, tok, Qwen2VLImageProcessor.from_pretrained(tiny_qwen2_5_vl_dir)


@pytest.fixture(scope="module")
def pipe(tiny_qwen2_5_vl_bundle):
    p = Pipeline(tiny_qwen2_5_vl_bundle, RuntimeOptions.simple(threads=2))
    yield p
    p.close()


def _hf_ids(hf, text: str, images) -> tuple[list[int], dict]:
    """What ``Qwen2_5_VLProcessor.__call__`` does: each ``<|image_pad|>`` becomes
    ``image_grid_thw[i].prod() // merge_size ** 2`` pads (the processor class itself needs a
    Qwen2 tokenizer class and torchvision's video processor, which the tiny model does not have)."""
    _, tok, ip = hf
    extra = {}
    if images:
        px = ip(images=list(images), return_tensors="pt")
        parts = text.split(PAD)
        text = parts[0] + "".join(
            PAD * (int(g.prod()) // MERGE**2) + p for g, p in zip(px["image_grid_thw"], parts[1:])
        )
        extra = {"pixel_values": px["pixel_values"], "image_grid_thw": px["image_grid_thw"]}
    return tok(text)["input_ids"], extra


def _generate(hf, text: str, images) -> list[int]:
    model = hf[0]
    ids, extra = _hf_ids(hf, text, images)
    x = torch.tensor([ids])
    with torch.no_grad():
        out = model.generate(
            input_ids=x, attention_mask=torch.ones_like(x), max_new_tokens=GREEDY, do_sample=False, **extra
        )
    return out[0, x.shape[1] :].tolist()


def test_manifest_records_the_facts(tiny_qwen2_5_vl_bundle):
    m = json.loads((tiny_qwen2_5_vl_bundle / "manifest.json").read_text())
    assert (m["llm"]["arch"], m["llm"]["media_positions"], m["llm"]["media_attention"]) == (
        "qwen2vl",
        "mrope",
        "causal",
    )
    pp = m["vision"]["preprocess"]
    assert pp["scheme"] == "qwen2vl" and (pp["patch_size"], pp["merge_size"], pp["window_patches"]) == (4, 2, 64)
    assert m["prompt"]["image_marker"] == "<|vision_start|><|image_pad|><|vision_end|>"
    par = m["provenance"]["parity"]
    assert par["vision_max_abs_diff"] < 1e-4 and len(par["vision_grids_checked"]) >= 3
    assert par["llm_top1_agreement"] >= 0.99


@pytest.mark.parametrize("grid", [(2, 2), (16, 12), (8, 30), (22, 14), (34, 34)])
def test_window_and_rotary_inputs_match_hf(hf, pipe, grid):
    visual = hf[0].model.visual
    thw = torch.tensor([[1, *grid]])
    ref_index, ref_cu = visual.get_window_index(thw)
    order, lengths = window_index(*grid, MERGE, 4)
    assert order.tolist() == ref_index.tolist()
    cu = np.unique(np.asarray(ref_cu))  # unique_consecutive of a non-decreasing list
    assert (np.cumsum(lengths) * MERGE**2).tolist() == cu[1:].tolist()
    # rot_pos_emb is the rotary table indexed by these (row, col) ids
    pos = torch.from_numpy(patch_positions(*grid, MERGE))
    table = visual.rotary_pos_emb(int(max(grid)))
    assert torch.equal(table[pos].flatten(1), visual.rot_pos_emb(thw))
    pp = pipe.scheme.params
    inputs = vision_inputs(*grid, pp)
    assert inputs["window_scatter"].shape == (grid[0] * grid[1],)
    assert sorted(inputs["window_gather"][inputs["window_mask"].ravel() == 0].tolist()) == list(
        range(grid[0] * grid[1])
    )


@pytest.mark.parametrize("size", SIZES)
def test_vision_embeddings_match_transformers(hf, pipe, size):
    img = _image(*size, seed=size[0])
    plan = pipe.scheme.plan(img, Budget())
    ours = pipe.scheme.layout(pipe.vision(plan.pixel_values), plan)[1][0]
    _, extra = _hf_ids(hf, PAD, [img])
    assert list(extra["image_grid_thw"][0]) == list(plan.info["grid"])
    with torch.no_grad():
        ref = hf[0].model.visual(extra["pixel_values"], extra["image_grid_thw"]).numpy()
    assert ours.shape == ref.shape and float(np.abs(ours - ref).max()) < 1e-4


def test_prompt_ids_match_the_processor(hf, pipe):
    """The pipeline's items, image blocks written out as pads, are the processor's input ids."""
    imgs = [_image(64, 48, 1), _image(40, 90, 2)]
    text = "a<|vision_start|><|image_pad|><|vision_end|>b<|vision_start|><|image_pad|><|vision_end|>c"
    ref, _ = _hf_ids(hf, text, imgs)
    pad = hf[1].convert_tokens_to_ids(PAD)
    from edge.runtime.text.prompt import ImageSlot, split_prompt

    chunks = split_prompt(text, pipe.manifest.prompt, 2, pipe._tokenize, False)
    ours = []
    for c in chunks:
        if isinstance(c, ImageSlot):
            plan = pipe.scheme.plan(imgs[c.index], Budget())
            ours += [pad] * plan.info["image_tokens"]
        else:
            ours += c
    assert ours == ref


def _prefill_logits(pipe, monkeypatch, text: str, images) -> np.ndarray:
    """The pipeline's logits after the prompt (its own items, positions and KV handling)."""
    seen = {}

    def prefill_only(target, sampler, options, timings, t0):
        seen["logits"] = pipe._prefill(target, timings)
        return iter(())

    monkeypatch.setattr(pipe, "_generate", prefill_only)
    pipe.reset()
    pipe._run(text, list(images), GenerateOptions(template=False), raw=True)
    monkeypatch.undo()
    return seen["logits"]


def test_prefill_logits_match_and_need_the_mrope_positions(hf, pipe, monkeypatch):
    """Greedy tokens of a random model can agree by luck; the logits after two images cannot:
    with M-RoPE ids they match transformers, with one position per row (linear) they do not."""
    imgs = [_image(64, 48, 12), _image(40, 90, 13)]
    text = "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>and"
    text += "<|vision_start|><|image_pad|><|vision_end|>Compare.<|im_end|>\n<|im_start|>assistant\n"
    ids, extra = _hf_ids(hf, text, imgs)
    with torch.no_grad():
        ref = hf[0](input_ids=torch.tensor([ids]), **extra).logits[0, -1].numpy()
    ours = _prefill_logits(pipe, monkeypatch, text, imgs)[: ref.shape[0]]
    assert float(np.abs(ours - ref).max()) < 1e-2 * float(np.abs(ref).max())
    assert np.argsort(-ours)[:5].tolist() == np.argsort(-ref)[:5].tolist()
    monkeypatch.setattr(pipe, "_positions", "linear")  # the same rows, one position each
    wrong = _prefill_logits(pipe, monkeypatch, text, imgs)[: ref.shape[0]]
    assert float(np.abs(wrong - ref).max()) > 10 * float(np.abs(ours - ref).max())
    pipe.reset()


def test_greedy_tokens_one_image(hf, pipe):
    img = _image(64, 48, 3)
    text = render_chat(pipe.manifest.llm, pipe.manifest.prompt, [Message("user", "Describe it.", (img,))])
    r = pipe.generate(text, [img], GenerateOptions(template=False, max_tokens=GREEDY))
    assert r.tokens == _generate(hf, text, [img])


def test_greedy_tokens_two_images_of_different_sizes(hf, pipe):
    imgs = [_image(64, 48, 4), _image(40, 90, 5)]
    text = "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|> and "
    text += "<|vision_start|><|image_pad|><|vision_end|>: which is wider?<|im_end|>\n<|im_start|>assistant\n"
    r = pipe.generate(text, imgs, GenerateOptions(template=False, max_tokens=GREEDY))
    assert r.tokens == _generate(hf, text, imgs)
    assert r.timings.prompt_tokens < len(_hf_ids(hf, text, imgs)[0])  # positions: fewer than rows


def test_image_in_a_later_chat_turn_reuses_the_kv_prefix(hf, pipe):
    pipe.reset()
    img, other = _image(56, 72, 6), _image(80, 40, 7)
    chat = pipe.chat()
    opts = GenerateOptions(max_tokens=GREEDY)
    turns = [("Hello there.", ()), ("Now look at this.", (img,)), ("And what follows?", ()), ("One more.", (other,))]
    msgs: list[Message] = []
    for i, (text, images) in enumerate(turns):
        result = None
        for ev in chat.send(text, images, opts):
            result = ev
        msgs.append(Message("user", text, images))
        rendered = render_chat(pipe.manifest.llm, pipe.manifest.prompt, msgs)
        all_images = [x for m in msgs for x in m.images]
        assert result.tokens == _generate(hf, rendered, all_images), f"turn {i}"
        if i:
            assert result.timings.reused_tokens > 0, f"turn {i} reused nothing"
        msgs.append(Message("assistant", result.text))


def test_no_template_cli_takes_the_processor_placeholders(tiny_qwen2_5_vl_bundle, tmp_path):
    path = tmp_path / "img.png"
    _image(64, 48, 8).save(path)
    prompt = "<|vision_start|><|image_pad|><|vision_end|>Describe."
    args = ("run", str(tiny_qwen2_5_vl_bundle), "--image", str(path), "--prompt", prompt, "--no-template")
    proc = run_cli(*args, "--max-tokens", "3", "--threads", "2", "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["timings"]["image_tokens"] == 48  # 64x48 pixels -> 16x12 patches -> 8x6 merged rows
    missing = run_cli(*args[:5], "two <|vision_start|><|image_pad|><|vision_end|>" + prompt, "--no-template")
    assert missing.returncode != 0 and "2 image placeholder(s)" in missing.stderr


def test_bad_inputs_get_clear_errors(pipe, tiny_qwen2_5_vl_bundle, tmp_path):
    text = "<|vision_start|><|image_pad|><|vision_end|>hi"
    with pytest.raises(InputError, match="aspect ratios up to 200"):
        pipe.generate(text, [_image(402, 2, 9)], GenerateOptions(template=False, max_tokens=2))
    with pytest.raises(InputError, match="below the 4 rows of the smallest image"):
        opts = GenerateOptions(template=False, max_tokens=2, budget=Budget(max_image_tokens=3))
        pipe.generate(text, [_image(64, 48, 10)], opts)
    small = pipe.generate(
        text, [_image(640, 480, 11)], GenerateOptions(template=False, max_tokens=2, budget=Budget(max_image_tokens=20))
    )
    assert small.timings.image_tokens <= 20 and small.timings.image_plans[0]["budget_applied"]
    # a bundle whose manifest lacks the position facts (media_positions falls back to "linear")
    copy = tmp_path / "no-positions"
    shutil.copytree(tiny_qwen2_5_vl_bundle, copy)
    m = json.loads((copy / "manifest.json").read_text())
    del m["llm"]["media_positions"]
    (copy / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(BundleError, match="lacks the position facts") as info:
        Pipeline(copy, RuntimeOptions.simple(threads=1))
    assert "\n" not in str(info.value)


@pytest.mark.slow
def test_q8_quantizes_the_graph_and_npu_recipes_refuse_it(tiny_qwen2_5_vl_bundle, tmp_path, photo):
    out = tmp_path / "q8"
    proc = run_cli("quantize", str(tiny_qwen2_5_vl_bundle), "-o", str(out), "-r", "q8", "--threads", "2", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["vision"]["cosine_min"] > 0.99
    m = json.loads((out / "manifest.json").read_text())
    assert m["vision"]["dtype"] == "int8" and m["llm"]["media_positions"] == "mrope"
    pipe = Pipeline(out, RuntimeOptions.simple(threads=2))
    try:
        r = pipe.generate(
            "<|vision_start|><|image_pad|><|vision_end|>hi", [photo], GenerateOptions(template=False, max_tokens=3)
        )
        assert len(r.tokens) == 3
    finally:
        pipe.close()
    npu = run_cli("quantize", str(tiny_qwen2_5_vl_bundle), "-o", str(tmp_path / "npu"), "-r", "npu-int8")
    assert npu.returncode != 0 and "Traceback" not in npu.stderr and "variable size" in npu.stderr


def test_image_rows_split_over_batches_keep_their_positions(hf, tiny_qwen2_5_vl_bundle):
    """An image of more rows than ``n_batch`` is decoded in several batches, each with its slice of
    the (t, h, w) ids: the answer is the one transformers gives."""
    import dataclasses

    opts = RuntimeOptions.simple(threads=2)
    opts = dataclasses.replace(opts, llm=dataclasses.replace(opts.llm, n_batch=16))
    img = _image(123, 77, 14)  # resized to 120x80: 15 x 10 merged rows = 150 rows, 10 batches
    text = "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>What is it?<|im_end|>\n<|im_start|>assistant\n"
    pipe = Pipeline(tiny_qwen2_5_vl_bundle, opts)
    try:
        r = pipe.generate(text, [img], GenerateOptions(template=False, max_tokens=GREEDY))
    finally:
        pipe.close()
    assert r.timings.image_tokens > 16 and r.tokens == _generate(hf, text, [img])
