"""Tiny random SmolVLM/Idefics3 and LLaVA-NeXT bundles (f32) against transformers:
multi-tile images, two images, budgets, and the embedding cache."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import run_cli
from PIL import Image

N_TOKENS = 16
FAMILIES = ["idefics3", "llava_next"]


@pytest.fixture(scope="module")
def setups(request):
    """(bundle, reference model, processor) per family, built lazily."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    cache = {}

    def get(family):
        if family not in cache:
            src = request.getfixturevalue(f"tiny_{family}_dir")
            bundle = request.getfixturevalue(f"tiny_{family}_bundle")
            model = AutoModelForImageTextToText.from_pretrained(src).eval()
            processor = AutoProcessor.from_pretrained(src, use_fast=False)
            cache[family] = (bundle, model, processor)
        return cache[family]

    return get


def _reference(model, processor, n_images, images):
    content = [{"type": "image"}] * n_images + [{"type": "text", "text": "Describe the pictures."}]
    text = processor.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True)
    inputs = processor(images=[images] if images else None, text=text, return_tensors="pt")
    inputs.pop("token_type_ids", None)
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=N_TOKENS, do_sample=False)
    return out[0, inputs["input_ids"].shape[1] :].tolist(), inputs["input_ids"].shape[1]


def _ours(bundle, images, **budget):
    import edge
    from edge.options import Budget, GenerateOptions

    pipe = edge.load(bundle, threads=2)
    result = pipe.generate(
        "Describe the pictures.", images, GenerateOptions(max_tokens=N_TOKENS, budget=Budget(**budget))
    )
    return pipe, result


@pytest.mark.parametrize("family", FAMILIES)
def test_multi_tile_image_matches_transformers(setups, family, photo2):
    bundle, model, processor = setups(family)
    ref, n_prompt = _reference(model, processor, 1, [Image.open(photo2)])
    _, ours = _ours(bundle, [photo2])
    assert ours.timings.tiles > 2  # the image really was sliced
    assert ours.timings.prompt_tokens == n_prompt
    assert ours.tokens == ref


@pytest.mark.parametrize("family", FAMILIES)
def test_two_images_match_transformers(setups, family, photo, photo2):
    bundle, model, processor = setups(family)
    ref, n_prompt = _reference(model, processor, 2, [Image.open(photo), Image.open(photo2)])
    _, ours = _ours(bundle, [photo, photo2])
    assert ours.timings.images == 2
    assert ours.timings.prompt_tokens == n_prompt
    assert ours.tokens == ref


@pytest.mark.parametrize("family", FAMILIES)
def test_budget_bounds_the_image_tokens(setups, family, photo2):
    bundle, *_ = setups(family)
    _, full = _ours(bundle, [photo2])
    budget = full.timings.image_tokens - 1
    _, small = _ours(bundle, [photo2], max_image_tokens=budget)
    assert small.timings.image_tokens <= budget
    assert small.timings.image_plans[0]["budget_applied"] is True
    assert small.timings.generated_tokens > 0
    _, one = _ours(bundle, [photo2], max_tiles=1)
    assert one.timings.tiles == 1


@pytest.mark.parametrize("family", FAMILIES)
def test_cache_skips_vision_work_the_second_time(setups, family, photo2):
    import edge
    from edge.options import GenerateOptions

    bundle, *_ = setups(family)
    pipe = edge.load(bundle, threads=2)
    first = pipe.generate("What is it?", [photo2], GenerateOptions(max_tokens=4))
    second = pipe.generate("What is it?", [photo2], GenerateOptions(max_tokens=4))
    assert first.timings.tiles > 0 and first.timings.cache_misses == 1
    assert second.timings.tiles == 0 and second.timings.image_encode_ms == 0
    assert second.timings.cache_hits == 1
    assert second.tokens == first.tokens


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("option", [["--max-image-tokens", "0"], ["--max-tiles", "-2"]])
def test_bad_budgets(setups, family, option, photo):
    bundle, *_ = setups(family)
    proc = run_cli("run", str(bundle), "--image", str(photo), "--prompt", "hi", *option)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error:") and len(proc.stderr.strip().splitlines()) == 1


def test_images_that_overflow_the_context(setups, photo2):
    bundle, *_ = setups("idefics3")
    proc = run_cli(
        "run", str(bundle), "--image", str(photo2), "--image", str(photo2), "--prompt", "hi", "--ctx", "128", "--json"
    )
    assert proc.returncode == 2, proc.stderr
    assert "context" in proc.stderr and "Traceback" not in proc.stderr


def test_json_reports_tiles_and_cache(setups, photo2):
    bundle, *_ = setups("idefics3")
    proc = run_cli("run", str(bundle), "--image", str(photo2), "--prompt", "hi", "--max-tokens", "2", "--json")
    assert proc.returncode == 0, proc.stderr
    t = json.loads(proc.stdout)["timings"]
    assert t["tiles"] > 1 and t["image_tokens"] > 0 and t["encode_ms_per_tile"] > 0
    assert {"cache_hits", "cache_misses", "image_plans"} <= set(t)
