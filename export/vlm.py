"""The VLM path of ``edge export``: a HF vision-language model (or a plain causal LM) -> a bundle.

Flow: look up the family spec, load the model with transformers, write the LLM as GGUF
with the GGUF writer of the family's LLM part (:class:`~edge.export.registry.LLMPart`) and
the vision part as ONNX, then check parity against the same torch
model and record the figures in the manifest.
"""

from __future__ import annotations

import dataclasses
import datetime
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from edge import __version__
from edge.bundle import write_bundle
from edge.errors import ExportError
from edge.export import parity
from edge.export import tokenizer as tokmod
from edge.export.mmproj_export import export_projector
from edge.export.registry import FamilySpec, spec_for
from edge.export.source import Source, gguf_fields, load_hf
from edge.manifest import LLMSpec, Manifest, PromptLayout, TensorSpec, VisionSpec
from edge.options import ExportOptions
from edge.progress import NullProgress
from edge.runtime.llama_backend import LLM
from edge.runtime.text.chat_affixes import derive_affixes
from edge.runtime.text.prompt import Message, detect_content_format, render_chat

LLM_FILE = "llm.gguf"
VISION_FILE = "vision.onnx"


def export_vlm(source: Source, config, out: Path, options: ExportOptions, progress=NullProgress()) -> Manifest:
    """Export a vision-language model (or a plain causal LM) read by transformers into ``out``."""
    import torch
    import transformers

    spec = spec_for(getattr(config, "model_type", "?"))
    tok, hf_tok = _tokenizer(source)
    progress.stage(f"loading {spec.name} model with transformers")
    cls = getattr(transformers, spec.model_class)
    model = load_hf(lambda: cls.from_pretrained(source.path, dtype=torch.float32, **source.hf_kwargs()), "model")
    model.eval()

    def populate(tmp: Path) -> Manifest:
        return _populate(tmp, source, spec, model, config, tok, hf_tok, options, progress)

    return write_bundle(out, populate, overwrite=options.force)


def _populate(tmp: Path, source: Source, spec: FamilySpec, model, config, tok, hf_tok, options, progress) -> Manifest:
    part = spec.llm
    hp = part.hparams(spec.text_config(config))
    tensors = list(_text_arrays(spec, model))
    name = options.name or source.label
    with progress.bar(len(tensors), f"LLM -> GGUF ({part.arch}, {options.dtype})") as advance:
        part.write_gguf(tmp / LLM_FILE, hp, tensors, tok, options.dtype, name, progress=advance)
    del tensors
    layout = PromptLayout()
    vision = None
    figures: dict[str, Any] = {}
    if spec.vision:
        layout, vision, figures = _export_vision(tmp, source, spec, model, config, tok, options, progress)
        vision, mm_figures = export_projector(
            tmp, LLM_FILE, source.path, spec, model, config, vision, options, progress
        )
        figures.update(mm_figures)
    llm_spec = LLMSpec(
        file=LLM_FILE,
        arch=part.arch,
        dtype=options.dtype,
        n_ctx_train=hp.n_ctx_train,
        n_embd=hp.n_embd,
        n_vocab=hp.n_vocab,
        bos_id=tok.bos_id,
        eos_ids=_eos_ids(model, tok),
        add_bos=tok.add_bos,
        chat_template=tok.chat_template,
        bos_token=tok.tokens[tok.bos_id] if tok.bos_id is not None else None,
        eos_token=tok.tokens[tok.eos_id] if tok.eos_id is not None else None,
        media_attention=part.media_attention,
        media_positions=part.media_positions,
        space_prefix=tok.space_prefix_rule,
    )
    if llm_spec.chat_template:
        layout = dataclasses.replace(
            layout, content_format=detect_content_format(llm_spec.chat_template, layout.image_marker)
        )
    # the template as role prefixes/suffixes for the native library (None where it cannot be said so)
    affixes, affix_note = derive_affixes(llm_spec, layout)
    llm_spec = dataclasses.replace(llm_spec, chat_affixes=affixes)
    progress.stage("checking parity with transformers")
    figures.update(_llm_figures(tmp, model, llm_spec, layout, hf_tok, options, progress))
    return Manifest(
        name=name,
        family=spec.name,
        llm=llm_spec,
        files={},
        prompt=layout,
        vision=vision,
        provenance={
            "source": source.label,
            "exporter": f"edge {__version__}",
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "parity": figures,
            "chat_affixes": affix_note,
        },
    )


def _export_vision(tmp, source, spec, model, config, tok, options, progress):
    import torch

    from edge.export.vision_onnx import export_onnx, store_weights_f16

    part = spec.vision
    pp = part.preprocess(source.path, config)
    produced = getattr(pp, "scheme", None)
    if produced != part.scheme:
        raise ExportError(
            f"the {spec.name} family declares the image scheme {part.scheme!r} but its preprocessing names {produced!r}"
        )
    if part.export is not None:  # the family's own graph export and parity check
        vision, figures = part.export(tmp, model, pp, options, progress)
        if part.video is not None and vision.video is None:  # the family's video parameters, as below
            vision = dataclasses.replace(vision, video=part.video(source.path, config))
        return part.prompt(config, tok.tokens), vision, figures
    module = part.module(model).eval()
    if pp.frame_size is None:
        raise ExportError(f"the {pp.scheme} scheme makes frames of varying sizes; exporting it is not supported yet")
    frame_h, frame_w = pp.frame_size
    example = torch.zeros(1, 3, frame_h, frame_w)
    progress.stage("vision tower + projector -> ONNX")
    with torch.no_grad():
        out_shape = tuple(module(example).shape)
    export_onnx(module, tmp / VISION_FILE, example, part.input_name, part.output_name)
    if options.dtype == "f16":
        store_weights_f16(tmp / VISION_FILE)
    n_tok = part.tokens_per_image(config)
    if out_shape[1] != n_tok:
        raise ExportError(f"the vision tower gives {out_shape[1]} rows per image, the spec expects {n_tok}")
    extras = {}
    for name, array in (part.extras(model) if part.extras else {}).items():
        np.save(tmp / f"{name}.npy", np.ascontiguousarray(array, dtype=np.float32))
        extras[name] = f"{name}.npy"
    vision = VisionSpec(
        file=VISION_FILE,
        dtype=options.dtype,
        input=TensorSpec(part.input_name, "float32", [-1, 3, frame_h, frame_w]),
        output=TensorSpec(part.output_name, "float32", [-1, n_tok, out_shape[2]]),
        tokens_per_image=n_tok,
        embed_dim=int(out_shape[2]),
        preprocess=pp,
        extras=extras,
        video=part.video(source.path, config) if part.video else None,
    )
    progress.stage("checking the vision graph against transformers")
    figures = parity.vision_parity(
        lambda x: part.reference(model, x), tmp, vision, options.runtime.vision, part.atol[options.dtype]
    )
    return part.prompt(config, tok.tokens), vision, figures


def _llm_figures(
    tmp: Path, model, llm_spec: LLMSpec, layout: PromptLayout, hf_tok, options, progress
) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    probe = "Describe the picture in one sentence. The capital of France is"
    if llm_spec.chat_template:
        probe = render_chat(llm_spec, layout, [Message("user", probe)])
    llm = LLM(tmp / LLM_FILE, dataclasses.replace(options.runtime.llm, n_ctx=512))  # tokenizer checks only
    try:
        if hf_tok is not None:
            figures.update(parity.tokenizer_parity(hf_tok, llm, llm_spec.add_bos, llm_spec.space_prefix))
        ids = llm.tokenize(probe, add_bos=llm_spec.add_bos and not probe.startswith(llm_spec.bos_token or "\0"))
    finally:
        llm.close()
    with progress.bar(2 * parity.GREEDY_TOKENS, "parity: greedy tokens on llama.cpp, then transformers") as advance:
        figures.update(parity.llm_parity(model, tmp / LLM_FILE, ids, options.runtime.llm, options.dtype, advance))
    return figures


def _text_arrays(spec: FamilySpec, model) -> Iterable[tuple[str, np.ndarray]]:
    # f32 arrays under the HF names the LLM part maps (what it leaves out, e.g. a tied lm_head, is its call)
    for name, t in spec.text_tensors(model):
        yield name, t.detach().float().numpy()


def _eos_ids(model, tok) -> list[int]:
    gen = getattr(model, "generation_config", None)
    ids = getattr(gen, "eos_token_id", None) if gen is not None else None
    ids = [ids] if isinstance(ids, int) else list(ids or [])
    if tok.eos_id is not None and tok.eos_id not in ids:
        ids.append(tok.eos_id)
    return [int(i) for i in ids]


def _tokenizer(source: Source):
    """Tokenizer facts for the GGUF, and the HF tokenizer to check them against."""
    if source.gguf_file:
        # transformers' GGUF -> tokenizers conversion is lossy (BOS flag, digit
        # splitting), so the source GGUF's own vocabulary is carried over as is.
        return tokmod.from_gguf_fields(gguf_fields(source.path / source.gguf_file)), None
    import transformers

    meta = tokmod.from_hf_dir(source.path)
    hf_tok = load_hf(lambda: transformers.AutoTokenizer.from_pretrained(source.path), "tokenizer")
    return meta, hf_tok
