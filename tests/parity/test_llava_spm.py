"""LLaVA-1.5 with Llama-2's real SentencePiece tokenizer and LLaVA-NeXT with a Mistral text model
(and a trained SentencePiece tokenizer), exported at f32, against transformers; and
``--no-template`` prompts written for the HF processor (``<image>`` expanded as it expands it)
for LLaVA, LLaVA-NeXT and Idefics3."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import export_bundle, run_cli
from PIL import Image
from spm_support import llama_cpp_tree

N_TOKENS = 16
# LLaVA-1.5 + Llama-2's tokenizer (legacy normaliser); LLaVA-NeXT + Mistral with a trained tokenizer,
# legacy and (``legacy=False``) Metaspace "first"
SPM_FAMILIES = ["llava_spm", "llava_next_mistral", "llava_next_mistral_first"]
# (height, width) of seeded test images: square, portrait, landscape, extreme ratios, tiny (not 1x1:
# the HF image processor cannot tell the channel axis of a 1x1 RGB array)
SIZES = [(47, 61), (120, 90), (30, 30), (200, 24), (17, 260), (2, 5), (96, 48)]
RAW_PROMPTS = {
    "llava": "USER: <image>\nWhat is shown in this picture? ASSISTANT:",
    "idefics3": "<|im_start|>User:<image>What is shown in this picture?<end_of_utterance>\nAssistant:",
}


@pytest.fixture(scope="session")
def tiny_llava_spm_dir(tmp_path_factory):
    from edge.export.builders.tiny_spm import llama2_tokenizer, tiny_llava_spm

    tok = llama2_tokenizer(llama_cpp_tree() / "models" / "ggml-vocab-llama-spm.gguf")
    return tiny_llava_spm(tmp_path_factory.mktemp("tiny_llava_spm"), tok)


@pytest.fixture(scope="session")
def tiny_llava_next_mistral_dir(tmp_path_factory):
    from edge.export.builders.tiny_spm import tiny_llava_next_mistral, trained_spm_tokenizer

    tok = trained_spm_tokenizer(tmp_path_factory.mktemp("spm-trained"))
    return tiny_llava_next_mistral(tmp_path_factory.mktemp("tiny_llava_next_mistral"), tok)


@pytest.fixture(scope="session")
def tiny_llava_next_mistral_first_dir(tmp_path_factory):
    from edge.export.builders.tiny_spm import tiny_llava_next_mistral, trained_spm_tokenizer

    tok = trained_spm_tokenizer(tmp_path_factory.mktemp("spm-trained-first"), legacy=False)
    return tiny_llava_next_mistral(tmp_path_factory.mktemp("tiny_llava_next_mistral_first"), tok, seed=1)


@pytest.fixture(scope="module")
def setups(request, tmp_path_factory):
    """(source, bundle, reference model, processor) per family, built lazily."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    cache = {}

    def get(family):
        if family not in cache:
            src = request.getfixturevalue(f"tiny_{family}_dir")
            if family in SPM_FAMILIES:
                bundle = export_bundle(src, tmp_path_factory.mktemp("bundles") / f"{family}-f32")
            else:
                bundle = request.getfixturevalue(f"tiny_{family}_bundle")
            model = AutoModelForImageTextToText.from_pretrained(src).eval()
            processor = AutoProcessor.from_pretrained(src, use_fast=False)
            cache[family] = (src, bundle, model, processor)
        return cache[family]

    return get


def _image(h, w, seed=0):
    rng = np.random.default_rng(seed + h * 1000 + w)
    return Image.fromarray((rng.random((h, w, 3)) * 255).astype(np.uint8))


def _save(img, tmp_path, name):
    path = tmp_path / f"{name}.png"
    img.save(path)
    return path


def _generate(model, processor, text, images):
    inputs = processor(images=images, text=text, return_tensors="pt")
    inputs.pop("token_type_ids", None)
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=N_TOKENS, do_sample=False)
    return out[0, inputs["input_ids"].shape[1] :].tolist(), inputs["input_ids"][0].tolist()


def _chat_text(processor, n_images, text="Describe the pictures."):
    content = [{"type": "image"}] * n_images + [{"type": "text", "text": text}]
    return processor.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True)


def _prompt_ids(pipe, image_token_id):
    """The ids the runtime decoded before generating, image rows written as the image token."""
    from edge.runtime.text.sequence import MediaBlock

    ids = []
    for item in pipe._seq:
        ids.extend([image_token_id] * item.embeds.shape[0] if isinstance(item, MediaBlock) else [item])
    return ids


@pytest.mark.parametrize("family", SPM_FAMILIES)
def test_manifest_records_the_spm_tokenizer(setups, family):
    import edge

    src, bundle, model, _ = setups(family)
    m = edge.load(bundle, threads=2).manifest
    assert m.llm.arch == "llama" and m.llm.add_bos and m.llm.bos_token == "<s>"
    parity_figures = m.provenance["parity"]
    assert parity_figures["tokenizer_texts_checked"] > 9 and parity_figures["llm_greedy_tokens_matched"] == 16
    text_type = json.loads((src / "config.json").read_text())["text_config"]["model_type"]
    assert text_type == ("llama" if family == "llava_spm" else "mistral")
    assert m.llm.space_prefix == ("first" if family.endswith("_first") else "gguf")


@pytest.mark.parametrize("family", SPM_FAMILIES)
def test_vision_embeddings_match_torch(setups, family):
    import edge

    _, bundle, model, processor = setups(family)
    pipe = edge.load(bundle, threads=2)
    side = pipe.manifest.vision.input.shape[-1]
    px = np.random.default_rng(3).standard_normal((3, 3, side, side)).astype(np.float32)
    with torch.no_grad():
        if family == "llava_spm":
            ref = torch.stack(
                list(
                    model.get_image_features(
                        pixel_values=torch.from_numpy(px),
                        vision_feature_layer=model.config.vision_feature_layer,
                        vision_feature_select_strategy=model.config.vision_feature_select_strategy,
                    )
                )
            ).numpy()
        else:
            from edge.export.families.llava_next import reference_features

            ref = reference_features(model, torch.from_numpy(px)).numpy()
    ours = pipe.vision(px)
    assert ours.shape == ref.shape
    assert np.abs(ours - ref).max() < 1e-4


@pytest.mark.parametrize("family", SPM_FAMILIES)
@pytest.mark.parametrize("size", SIZES, ids=[f"{h}x{w}" for h, w in SIZES])
def test_greedy_tokens_with_an_image_match_generate(setups, family, size, tmp_path):
    import edge
    from edge.options import GenerateOptions

    _, bundle, model, processor = setups(family)
    img = _image(*size)
    ref, ref_ids = _generate(model, processor, _chat_text(processor, 1), [img])
    pipe = edge.load(bundle, threads=2)
    ours = pipe.generate("Describe the pictures.", [_save(img, tmp_path, "a")], GenerateOptions(max_tokens=N_TOKENS))
    assert ours.timings.prompt_tokens == len(ref_ids)
    assert _prompt_ids(pipe, model.config.image_token_index)[: len(ref_ids)] == ref_ids
    eos = model.generation_config.eos_token_id
    assert len(ref) >= 8 or ref[-1] == eos  # a short answer must have ended on EOS
    assert ours.tokens == (ref[:-1] if ref[-1] == eos else ref)  # the runtime does not list the EOS


@pytest.mark.parametrize("family", SPM_FAMILIES)
def test_two_images_match_generate(setups, family, tmp_path):
    import edge
    from edge.options import GenerateOptions

    _, bundle, model, processor = setups(family)
    imgs = [_image(47, 61), _image(120, 90)]
    ref, ref_ids = _generate(model, processor, _chat_text(processor, 2), imgs)
    paths = [_save(im, tmp_path, f"i{i}") for i, im in enumerate(imgs)]
    pipe = edge.load(bundle, threads=2)
    ours = pipe.generate("Describe the pictures.", paths, GenerateOptions(max_tokens=N_TOKENS))
    assert ours.timings.images == 2 and ours.timings.prompt_tokens == len(ref_ids)
    assert ours.tokens == ref


@pytest.mark.parametrize("family", [*SPM_FAMILIES, "llava", "llava_next", "idefics3"])
@pytest.mark.parametrize("size", [(47, 61), (120, 90), (17, 260)], ids=["47x61", "120x90", "17x260"])
def test_no_template_prompt_is_the_processors_prompt(setups, family, size, tmp_path):
    """A prompt written for the HF processor, with its own ``<image>`` placeholder, runs unchanged:
    the same input ids as the processor's expansion and the same greedy tokens."""
    import edge
    from edge.options import GenerateOptions

    _, bundle, model, processor = setups(family)
    text = RAW_PROMPTS["idefics3" if family == "idefics3" else "llava"]
    img = _image(*size)
    images = [[img]] if family == "idefics3" else [img]
    ref, ref_ids = _generate(model, processor, text, images)
    pipe = edge.load(bundle, threads=2)
    path = _save(img, tmp_path, "p")
    ours = pipe.generate(text, [path], GenerateOptions(max_tokens=N_TOKENS, template=False))
    image_id = getattr(model.config, "image_token_index", None) or model.config.image_token_id
    assert _prompt_ids(pipe, image_id)[: len(ref_ids)] == ref_ids
    assert ours.tokens == ref


def test_no_template_on_the_command_line(setups, tmp_path):
    _, bundle, model, processor = setups("llava_spm")
    img = _image(120, 90)
    text = RAW_PROMPTS["llava"]
    ref, ref_ids = _generate(model, processor, text, [img])
    args = ["run", str(bundle), "--image", str(_save(img, tmp_path, "c")), "--prompt", text, "--no-template"]
    proc = run_cli(*args, "--max-tokens", str(N_TOKENS), "--json", "--threads", "2")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["tokens"] == ref and out["timings"]["prompt_tokens"] == len(ref_ids)


def test_export_refuses_an_unrepresentable_tokenizer(tiny_llava_next_mistral_dir, tmp_path):
    """A tokenizer llama.cpp cannot reproduce stops the export with one line naming the mismatch."""
    import shutil

    src = tmp_path / "src"
    shutil.copytree(tiny_llava_next_mistral_dir, src)
    tj = json.loads((src / "tokenizer.json").read_text(encoding="utf-8"))
    tj["normalizer"] = None
    tj["pre_tokenizer"] = {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always", "split": False}
    (src / "tokenizer.json").write_text(json.dumps(tj), encoding="utf-8")
    out = tmp_path / "bundle"
    proc = run_cli("export", str(src), "-o", str(out), "--threads", "2")
    assert proc.returncode != 0
    err = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and "prepend_scheme 'always'" in err[0] and "Traceback" not in proc.stderr
    assert not out.exists()
