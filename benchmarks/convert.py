"""The llama.cpp peer's files, made by llama.cpp's own converters from the same HF checkpoint.

The converters are run from a llama.cpp source tree (the one vendored in the
llama-cpp-python sdist, ``vendor/llama.cpp``) at benchmark time; nothing of it is
copied into this project. What each architecture needs, following llama.cpp's docs
(``docs/multimodal.md``, ``docs/multimodal/llava.md``):

- text GGUF: ``convert_hf_to_gguf.py`` on the language model saved alone as a
  ``LlamaForCausalLM`` folder with the tokenizer (llama.cpp's text converter does not
  take ``Idefics3ForConditionalGeneration``; its LLaVA docs prescribe exporting the LLM
  with transformers first). Types other than f32/f16/q8_0 are made from the f16 file
  with llama.cpp's own quantizer (``llama_model_quantize``).
- mmproj, Idefics3/SmolVLM: ``convert_hf_to_gguf.py --mmproj`` on the checkpoint.
- mmproj, LLaVA-1.5 (CLIP tower): the legacy route, ``convert_image_encoder_to_gguf.py
  --clip-model-is-vision --llava-projector``, fed with the CLIP vision tower saved as a
  ``CLIPVisionModel`` folder and the projector weights as ``llava.projector`` (what
  ``llava_surgery_v2.py`` extracts; it does not recognise transformers 4.57's key names).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from edge.errors import InputError, RuntimeFailure
from edge.progress import NullProgress

# bundle LLM dtype -> convert_hf_to_gguf --outtype (anything else: f16, then llama.cpp's quantizer)
_OUTTYPES = {"F32": "f32", "F16": "f16", "Q8_0": "q8_0"}


@dataclass(frozen=True)
class PeerFiles:
    """The GGUF pair llama.cpp's multimodal path loads."""

    text: Path
    mmproj: Path


def llama_cpp_tree(path: Path) -> Path:
    """The llama.cpp source folder inside ``path`` (an unpacked llama-cpp-python sdist or llama.cpp itself)."""
    for cand in (path, path / "vendor" / "llama.cpp"):
        if (cand / "convert_hf_to_gguf.py").is_file() and (cand / "tools" / "mtmd").is_dir():
            return cand
    raise InputError(
        f"{path} is not a llama.cpp source tree (no convert_hf_to_gguf.py); unpack the llama-cpp-python sdist "
        "(pip download --no-binary :all: --no-deps llama-cpp-python) and pass its folder"
    )


def prepare(hf_dir: Path, out: Path, llama_src: Path, llm_dtype: str, progress=NullProgress()) -> PeerFiles:
    """Convert ``hf_dir`` with llama.cpp's tools into ``out`` (reused when already there).

    ``llm_dtype`` is the bundle's LLM type (``f16``, ``Q8_0``, ``Q4_K_M``...): the peer's
    text GGUF gets the same quantization.
    """
    tree = llama_cpp_tree(llama_src.absolute())
    hf_dir, out = hf_dir.absolute(), out.absolute()
    config = json.loads((hf_dir / "config.json").read_text())
    arch = (config.get("architectures") or ["?"])[0]
    if arch not in _MMPROJ:
        raise InputError(
            f"no llama.cpp conversion route for {arch} in the benchmark harness (known: {', '.join(_MMPROJ)})"
        )
    out.mkdir(parents=True, exist_ok=True)
    mmproj = out / "mmproj-f16.gguf"
    if not mmproj.is_file():
        progress.stage(f"llama.cpp peer: converting the vision tower of {hf_dir.name} (mmproj, f16)")
        _MMPROJ[arch](hf_dir, mmproj, tree)
    text = out / f"text-{llm_dtype}.gguf"
    if not text.is_file():
        progress.stage(f"llama.cpp peer: converting the language model of {hf_dir.name} ({llm_dtype})")
        _text(hf_dir, text, tree, llm_dtype, out)
    return PeerFiles(text, mmproj)


def _run(args: list, tree: Path, what: str) -> None:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tree / "gguf-py"), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, *map(str, args)], cwd=tree, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        tail = [line for line in (proc.stderr or proc.stdout).strip().splitlines() if line.strip()]
        raise RuntimeFailure(f"llama.cpp's {what} failed: {tail[-1] if tail else proc.returncode}")


def _load(hf_dir: Path):
    import torch
    from transformers import AutoModelForImageTextToText

    return AutoModelForImageTextToText.from_pretrained(hf_dir, dtype=torch.float32).eval()


def _text(hf_dir: Path, dst: Path, tree: Path, llm_dtype: str, work: Path) -> None:
    ftype = llm_dtype.upper()  # manifests write "f16", "q8_0", "q4_k_m"...; llama.cpp names "Q4_K_M"
    first = dst if ftype in _OUTTYPES else work / "text-f16.gguf"
    if not first.is_file():
        _convert_text(hf_dir, first, tree, _OUTTYPES.get(ftype, "f16"), work)
    if first != dst:
        from edge.runtime.llama_backend import quantize_gguf

        quantize_gguf(first, dst, ftype)


def _convert_text(hf_dir: Path, dst: Path, tree: Path, outtype: str, work: Path) -> None:
    from transformers import AutoTokenizer, LlamaForCausalLM

    model = _load(hf_dir)
    inner = model.model
    decoder = getattr(inner, "language_model", None) or getattr(inner, "text_model")
    text_cfg = model.config.get_text_config()
    text_cfg.architectures = ["LlamaForCausalLM"]
    lm = LlamaForCausalLM(text_cfg).eval()
    lm.model.load_state_dict(decoder.state_dict(), strict=True)
    lm.lm_head.load_state_dict(model.lm_head.state_dict())
    folder = work / "text-hf"
    shutil.rmtree(folder, ignore_errors=True)
    lm.save_pretrained(folder)
    AutoTokenizer.from_pretrained(hf_dir).save_pretrained(folder)
    del model, lm
    _run(["convert_hf_to_gguf.py", folder, "--outtype", outtype, "--outfile", dst], tree, "convert_hf_to_gguf.py")
    shutil.rmtree(folder, ignore_errors=True)


def _mmproj_hf(hf_dir: Path, dst: Path, tree: Path) -> None:
    _run(
        ["convert_hf_to_gguf.py", hf_dir, "--mmproj", "--outtype", "f16", "--outfile", dst],
        tree,
        "convert_hf_to_gguf.py --mmproj",
    )


def _mmproj_llava_legacy(hf_dir: Path, dst: Path, tree: Path) -> None:
    import torch

    model = _load(hf_dir)
    if model.config.vision_config.model_type != "clip_vision_model":
        raise InputError("the LLaVA route of llama.cpp's legacy converter needs a CLIP vision tower")
    vit = dst.parent / "vit"
    shutil.rmtree(vit, ignore_errors=True)
    model.model.vision_tower.save_pretrained(vit)
    cfg = json.loads((vit / "config.json").read_text())
    cfg["vision_feature_layer"] = model.config.vision_feature_layer
    (vit / "config.json").write_text(json.dumps(cfg))
    proj = {f"multi_modal_projector.{k}": v.float() for k, v in model.model.multi_modal_projector.state_dict().items()}
    torch.save(proj, vit / "llava.projector")
    mean = json.loads((hf_dir / "preprocessor_config.json").read_text()).get("image_mean")
    std = json.loads((hf_dir / "preprocessor_config.json").read_text()).get("image_std")
    del model
    _run(
        [
            "tools/mtmd/legacy-models/convert_image_encoder_to_gguf.py",
            "-m",
            vit,
            "--llava-projector",
            vit / "llava.projector",
            "--output-dir",
            vit,
            "--clip-model-is-vision",
            "--projector-type",
            "mlp",
            "--image-mean",
            *mean,
            "--image-std",
            *std,
        ],
        tree,
        "convert_image_encoder_to_gguf.py",
    )
    (vit / "mmproj-model-f16.gguf").rename(dst)
    shutil.rmtree(vit, ignore_errors=True)


_MMPROJ: dict[str, Callable[[Path, Path, Path], None]] = {
    "Idefics3ForConditionalGeneration": _mmproj_hf,
    "SmolVLMForConditionalGeneration": _mmproj_hf,
    "LlavaForConditionalGeneration": _mmproj_llava_legacy,
}
