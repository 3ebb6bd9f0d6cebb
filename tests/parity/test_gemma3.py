"""Tiny random Gemma 3 (SigLIP tower, pooled projector, Gemma 3 text model with sliding-window
layers), exported at f32 and run through edge, against transformers: vision embeddings, greedy
tokens with images of several sizes, two images, pan-and-scan crops, the chat template, the
bidirectional attention inside an image block, the text model alone, and bad input."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest
import torch
from conftest import run_cli
from PIL import Image

N_TOKENS = 20
PROMPT = "<start_of_turn>user\n<start_of_image>Describe this picture.<end_of_turn>\n<start_of_turn>model\n"
TWO = (
    "<start_of_turn>user\nFirst <start_of_image> then\n<start_of_image>\nCompare.<end_of_turn>\n<start_of_turn>model\n"
)
# what Gemma3Processor passes for pan-and-scan: the call's arguments (the tiny model's config holds the same)
PAS = dict(
    do_pan_and_scan=True,
    pan_and_scan_min_crop_size=8,
    pan_and_scan_max_num_crops=4,
    pan_and_scan_min_ratio_to_activate=1.2,
)
SIZES = [(47, 61), (100, 30), (20, 90), (33, 33), (7, 120)]


def _image(w: int, h: int) -> Image.Image:
    rng = np.random.default_rng(w * 1000 + h)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


def _reference(src):
    from transformers import AutoProcessor, Gemma3ForConditionalGeneration

    model = Gemma3ForConditionalGeneration.from_pretrained(src, attn_implementation="eager").eval()
    return model, AutoProcessor.from_pretrained(src, use_fast=False)


@pytest.fixture(scope="module")
def reference(tiny_gemma3_dir):
    return _reference(tiny_gemma3_dir)


@pytest.fixture(scope="module")
def reference_pas(tiny_gemma3_pas_dir):
    return _reference(tiny_gemma3_pas_dir)


@pytest.fixture(scope="module")
def pipe(tiny_gemma3_bundle):
    import edge

    p = edge.load(tiny_gemma3_bundle, threads=2)
    yield p
    p.close()


@pytest.fixture(scope="module")
def pipe_pas(tiny_gemma3_pas_bundle):
    import edge

    p = edge.load(tiny_gemma3_pas_bundle, threads=2)
    yield p
    p.close()


def _generate_ref(reference, text, images, **kwargs):
    model, processor = reference
    inputs = processor(images=images, text=text, return_tensors="pt", **kwargs)
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=N_TOKENS, do_sample=False)
    return out[0, inputs["input_ids"].shape[1] :].tolist(), inputs["input_ids"].shape[1]


def _ours(pipe, text, images):
    from edge.options import GenerateOptions

    return pipe.generate(text, images, GenerateOptions(max_tokens=N_TOKENS, template=False))


def test_manifest_records_the_gemma3_facts(tiny_gemma3_bundle, tiny_gemma3_pas_bundle):
    for bundle, pas in ((tiny_gemma3_bundle, False), (tiny_gemma3_pas_bundle, True)):
        m = json.loads((bundle / "manifest.json").read_text())
        assert (m["llm"]["arch"], m["llm"]["media_attention"], m["llm"]["media_positions"]) == (
            "gemma3",
            "bidirectional",
            "linear",
        )
        pp = m["vision"]["preprocess"]
        assert (pp["scheme"], pp["image_size"], pp["tokens_per_image"], pp["do_pan_and_scan"]) == (
            "gemma3",
            32,
            16,
            pas,
        )
        assert m["prompt"]["image_marker"] == "<start_of_image>" and m["llm"]["add_bos"] is True
        assert m["provenance"]["parity"]["vision_max_abs_diff"] < 1e-4


def test_vision_embeddings_match_transformers(pipe_pas, reference_pas):
    from edge.options import Budget

    model, processor = reference_pas
    images = [_image(100, 30), _image(20, 90), _image(47, 61)]
    for img in images:
        plan = pipe_pas.scheme.plan(img, Budget())
        ref_px = processor.image_processor(images=img, return_tensors="np", **PAS)["pixel_values"]
        assert np.abs(plan.pixel_values - ref_px).max() == 0.0
        ours = pipe_pas.vision(plan.pixel_values)
        with torch.no_grad():
            ref = model.model.get_image_features(torch.from_numpy(ref_px)).numpy()
        assert ours.shape == ref.shape == (ref_px.shape[0], 16, 64)
        assert np.abs(ours - ref).max() < 1e-4


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_greedy_tokens_with_an_image_match_transformers(pipe, reference, size):
    img = _image(*size)
    ref, n_prompt = _generate_ref(reference, PROMPT, img)
    out = _ours(pipe, PROMPT, [img])
    assert len(ref) >= 16
    assert out.tokens == ref
    assert out.timings.prompt_tokens == n_prompt  # the marker expanded as the processor expands it


def test_raw_prompt_on_the_cli_matches_transformers(tiny_gemma3_bundle, reference, tmp_path):
    path = tmp_path / "wide.png"
    _image(90, 40).save(path)
    ref, n_prompt = _generate_ref(reference, PROMPT, Image.open(path))
    proc = run_cli(
        "run", str(tiny_gemma3_bundle), "--image", str(path), "--prompt", PROMPT, "--no-template",
        "--max-tokens", str(N_TOKENS), "--json", "--threads", "2",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["tokens"] == ref and out["timings"]["prompt_tokens"] == n_prompt


def test_two_images_match_transformers(pipe, reference):
    images = [_image(47, 61), _image(100, 30)]
    ref, n_prompt = _generate_ref(reference, TWO, images)
    out = _ours(pipe, TWO, images)
    assert out.tokens == ref and out.timings.prompt_tokens == n_prompt


@pytest.mark.parametrize("size", [(100, 30), (20, 90), (61, 47), (33, 33)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_pan_and_scan_greedy_tokens_match_transformers(pipe_pas, reference_pas, size):
    img = _image(*size)
    ref, n_prompt = _generate_ref(reference_pas, PROMPT, img, **PAS)
    out = _ours(pipe_pas, PROMPT, [img])
    assert out.tokens == ref and out.timings.prompt_tokens == n_prompt
    crops = {(100, 30): 3, (20, 90): 4, (61, 47): 2, (33, 33): 0}[size]
    assert out.timings.tiles == 1 + crops


def test_pan_and_scan_with_two_images(pipe_pas, reference_pas):
    images = [_image(100, 30), _image(33, 33)]
    ref, n_prompt = _generate_ref(reference_pas, TWO, images, **PAS)
    out = _ours(pipe_pas, TWO, images)
    assert out.tokens == ref and out.timings.prompt_tokens == n_prompt


def test_chat_template_places_the_image_like_the_processor(pipe, reference):
    from edge.options import GenerateOptions

    model, processor = reference
    img = _image(47, 61)
    conversation = [{"role": "user", "content": [{"type": "image", "image": img}, {"type": "text", "text": "Hi."}]}]
    # the processor's own chat path: the template writes <bos>, the tokenizer adds none then (one BOS)
    inputs = processor.apply_chat_template(
        conversation, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
    )
    assert inputs["input_ids"][0, :2].tolist() == [
        processor.tokenizer.bos_token_id,
        processor.tokenizer.convert_tokens_to_ids("<start_of_turn>"),
    ]
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=N_TOKENS, do_sample=False)
    ref = out[0, inputs["input_ids"].shape[1] :].tolist()
    ours = pipe.generate("Hi.", [img], GenerateOptions(max_tokens=N_TOKENS))
    assert ours.tokens == ref and ours.timings.prompt_tokens == inputs["input_ids"].shape[1]


def test_image_rows_attend_to_each_other(tiny_gemma3_bundle, reference, tmp_path):
    """The same bundle marked causal runs each image block under a causal mask: its answers leave
    transformers', while the bidirectional bundle's match (test_greedy_tokens_with_an_image...)."""
    import edge

    causal = tmp_path / "causal"
    shutil.copytree(tiny_gemma3_bundle, causal)
    m = json.loads((causal / "manifest.json").read_text())
    m["llm"]["media_attention"] = "causal"
    (causal / "manifest.json").write_text(json.dumps(m))
    p = edge.load(causal, threads=2)
    try:
        differ = 0
        for size in SIZES[:4]:
            img = _image(*size)
            ref, _ = _generate_ref(reference, PROMPT, img)
            differ += _ours(p, PROMPT, [img]).tokens != ref
    finally:
        p.close()
    assert differ >= 3


def test_a_small_batch_is_raised_to_hold_one_image_block(tiny_gemma3_bundle, reference):
    """A bidirectional block must be one ubatch: the pipeline raises a smaller batch to the
    rows of a frame; the LLM itself refuses a larger block in one line."""
    from edge.errors import InputError
    from edge.options import RuntimeOptions
    from edge.runtime.pipeline import Pipeline

    opts = RuntimeOptions.simple(threads=2)
    opts = dataclasses.replace(opts, llm=dataclasses.replace(opts.llm, n_batch=4))
    p = Pipeline(tiny_gemma3_bundle, opts)
    try:
        assert p.llm.n_batch == 16
        img = _image(47, 61)
        ref, _ = _generate_ref(reference, PROMPT, img)
        assert _ours(p, PROMPT, [img]).tokens == ref
        p.llm.rewind(0)
        with pytest.raises(InputError, match="must be decoded in one batch") as info:
            p.llm.eval_embeddings(np.zeros((17, 64), np.float32), causal=False)
        assert "\n" not in str(info.value)
    finally:
        p.close()


def test_text_model_alone_matches_transformers(tiny_gemma3_text_bundle, tiny_gemma3_text_dir):
    """Gemma3ForCausalLM; a prompt longer than the sliding window (24) exercises the local layers."""
    from transformers import AutoTokenizer, Gemma3ForCausalLM

    import edge

    model = Gemma3ForCausalLM.from_pretrained(tiny_gemma3_text_dir, attn_implementation="eager").eval()
    tok = AutoTokenizer.from_pretrained(tiny_gemma3_text_dir)
    text = "The quick brown fox jumps over the lazy dog. " * 4 + "Then, in 2024, it ran 3.5 km home and"
    ids = tok(text, return_tensors="pt")["input_ids"]
    assert ids.shape[1] > 24
    with torch.no_grad():
        ref = model.generate(ids, max_new_tokens=N_TOKENS, do_sample=False)[0, ids.shape[1] :].tolist()
    p = edge.load(tiny_gemma3_text_bundle, threads=2)
    try:
        assert _ours(p, text, []).tokens == ref
    finally:
        p.close()


def test_bad_input_gets_one_line_errors(tiny_gemma3_bundle, tmp_path):
    path = tmp_path / "a.png"
    _image(20, 20).save(path)
    proc = run_cli(
        "run", str(tiny_gemma3_bundle), "--image", str(path), "--image", str(path), "--prompt", PROMPT,
        "--no-template", "--max-tokens", "2", "--threads", "1",
    )  # fmt: skip
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert lines[-1].startswith("error: ") and "1 image placeholder(s) '<start_of_image>' but 2 image(s)" in lines[-1]


def test_export_refuses_what_llama_cpp_cannot_run(tiny_gemma3_text_dir):
    from transformers import AutoConfig

    from edge.errors import ExportError
    from edge.export.llm_gemma3 import Gemma3HParams

    cfg = AutoConfig.from_pretrained(tiny_gemma3_text_dir)
    assert Gemma3HParams.from_hf(cfg).swa_layers == (True, False, True, False)
    for key, value, words in (
        ("query_pre_attn_scalar", 24, "query_pre_attn_scalar 24 is not 16"),
        ("rope_scaling", {"rope_type": "yarn", "factor": 4.0}, "RoPE scaling 'yarn'"),
        ("attn_logit_softcapping", 50.0, "soft-capping"),
    ):
        bad = AutoConfig.from_pretrained(tiny_gemma3_text_dir)
        setattr(bad, key, value)
        with pytest.raises(ExportError, match=words) as info:
            Gemma3HParams.from_hf(bad)
        assert "\n" not in str(info.value)


def test_a_second_chat_turn_reuses_the_image_in_the_cache(tiny_gemma3_bundle):
    """The KV prefix holds whole image blocks (never cut inside one), so the next turn only adds its text;
    the sliding-window layers keep their full cache (llama.cpp's swa_full default), so the kept prefix is valid."""
    import edge
    from edge.options import GenerateOptions
    from edge.runtime.text.generate import join

    p = edge.load(tiny_gemma3_bundle, threads=2)
    try:
        chat = p.chat()
        first = join(chat.send("What is this?", [_image(47, 61)], GenerateOptions(max_tokens=8)))
        second = join(chat.send("And the colours?", [], GenerateOptions(max_tokens=8)))
        assert first.timings.reused_tokens == 0 and second.timings.reused_tokens >= first.timings.prompt_tokens
    finally:
        p.close()
