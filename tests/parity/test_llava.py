"""Tiny random LLaVA, exported at f32 and run through the CLI, against transformers."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import run_cli
from PIL import Image

PROMPT = "USER: <image>\nWhat is shown in this picture? ASSISTANT:"
N_TOKENS = 20


@pytest.fixture(scope="module")
def reference(tiny_llava_dir):
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    model = LlavaForConditionalGeneration.from_pretrained(tiny_llava_dir).eval()
    processor = AutoProcessor.from_pretrained(tiny_llava_dir, use_fast=False)
    return model, processor


def _hf_inputs(processor, text, images):
    inputs = processor(images=images, text=text, return_tensors="pt")
    inputs.pop("token_type_ids", None)
    return inputs


def test_vision_embeddings_match_torch(tiny_llava_bundle, reference, photo, photo2):
    import edge

    model, processor = reference
    pipe = edge.load(tiny_llava_bundle, threads=2)
    from edge.runtime.vision.clip import clip_pixel_values
    from edge.runtime.vision.image_io import load_image

    imgs = [load_image(photo), load_image(photo2)]
    ours_px = clip_pixel_values(imgs, pipe.manifest.vision.preprocess)
    ref_px = processor.image_processor(images=imgs, return_tensors="np")["pixel_values"]
    assert np.abs(ours_px - ref_px).max() < 1e-5
    ours = pipe.vision(ours_px)
    with torch.no_grad():
        cfg = model.config
        ref = torch.stack(
            list(
                model.get_image_features(
                    pixel_values=torch.from_numpy(ref_px),
                    vision_feature_layer=cfg.vision_feature_layer,
                    vision_feature_select_strategy=cfg.vision_feature_select_strategy,
                )
            )
        ).numpy()
    assert ours.shape == ref.shape == (2, pipe.manifest.vision.tokens_per_image, pipe.manifest.llm.n_embd)
    assert np.abs(ours - ref).max() < 1e-4


def _generate_ref(model, processor, text, images):
    inputs = _hf_inputs(processor, text, images)
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=N_TOKENS, do_sample=False)
    return out[0, inputs["input_ids"].shape[1] :].tolist()


@pytest.mark.parametrize("which", ["photo", "photo2"])
def test_greedy_tokens_with_image_match_transformers(tiny_llava_bundle, reference, which, request):
    image = request.getfixturevalue(which)
    model, processor = reference
    ref = _generate_ref(model, processor, PROMPT, Image.open(image))
    proc = run_cli(
        "run",
        str(tiny_llava_bundle),
        "--image",
        str(image),
        "--prompt",
        PROMPT,
        "--no-template",
        "--max-tokens",
        str(N_TOKENS),
        "--json",
        "--threads",
        "2",
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert len(ref) >= 16
    assert out["tokens"] == ref
    assert out["timings"]["images"] == 1 and out["timings"]["image_encode_ms"] > 0
    assert out["timings"]["prompt_tokens"] == _hf_inputs(processor, PROMPT, Image.open(image))["input_ids"].shape[1]


def test_the_image_changes_the_answer_like_in_transformers(tiny_llava_bundle, reference, photo, photo2):
    """Both runtimes must agree that the two images lead to different continuations."""
    import edge
    from edge.options import GenerateOptions

    model, processor = reference
    pipe = edge.load(tiny_llava_bundle, threads=2)
    opts = GenerateOptions(max_tokens=N_TOKENS, template=False)
    ours = [pipe.generate(PROMPT, [p], opts).tokens for p in (photo, photo2)]
    refs = [_generate_ref(model, processor, PROMPT, Image.open(p)) for p in (photo, photo2)]
    assert ours == refs


def test_chat_template_places_the_image_like_the_processor(tiny_llava_bundle, reference, photo):
    import edge
    from edge.options import GenerateOptions

    model, processor = reference
    conversation = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Describe it."}]}]
    text = processor.apply_chat_template(conversation, add_generation_prompt=True)
    ref = _generate_ref(model, processor, text, Image.open(photo))
    pipe = edge.load(tiny_llava_bundle, threads=2)
    ours = pipe.generate("Describe it.", [photo], GenerateOptions(max_tokens=N_TOKENS))
    assert ours.tokens == ref


def test_two_turn_chat_reuses_the_cache(tiny_llava_bundle, photo):
    import edge
    from edge.options import GenerateOptions
    from edge.runtime.text.generate import join

    pipe = edge.load(tiny_llava_bundle, threads=2)
    chat = pipe.chat()
    opts = GenerateOptions(max_tokens=8)
    first = join(chat.send("What is this?", [photo], opts))
    second = join(chat.send("And the colours?", [], opts))
    assert first.timings.reused_tokens == 0
    # the whole first turn (image included) stays in the KV cache
    assert second.timings.reused_tokens >= first.timings.prompt_tokens
    assert pipe.cache.hits == 1 and pipe.cache.misses == 1
