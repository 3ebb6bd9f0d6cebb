"""Every registered architecture family must have a tiny-model test."""

from edge.export.builders import TINY_BUILDERS
from edge.export.registry import families


def test_every_family_has_a_tiny_model_builder():
    missing = set(families()) - set(TINY_BUILDERS)
    assert not missing, f"families without a tiny-model test: {sorted(missing)}"


def test_every_vision_family_names_a_runtime_scheme():
    """Each family's vision part names its runtime scheme, and the runtime has it."""
    from edge.runtime.vision.schemes import SCHEMES

    vision = {name: spec.vision.scheme for name, spec in families().items() if spec.vision is not None}
    assert vision == {
        "llava": "clip",
        "llava_next": "anyres",
        "idefics3": "idefics3",
        "smolvlm": "idefics3",
        "qwen2_5_vl": "qwen2vl",
        "gemma3": "gemma3",
    }
    assert set(vision.values()) <= set(SCHEMES)


def test_every_family_names_an_llm_part():
    import typing

    from edge.export.llm_llama import LLAMA
    from edge.export.registry import LLMPart
    from edge.manifest import MediaAttention, MediaPositions

    for name, spec in families().items():
        assert isinstance(spec.llm, LLMPart), name
        assert spec.llm.media_attention in typing.get_args(MediaAttention), name
        assert spec.llm.media_positions in typing.get_args(MediaPositions), name
    assert {name for name, spec in families().items() if spec.llm is LLAMA} == {
        "llama",
        "llava",
        "llava_next",
        "idefics3",
        "smolvlm",
    }
    assert LLAMA.arch == "llama"
    from edge.export.llm_gemma3 import GEMMA3

    assert {name for name, spec in families().items() if spec.llm is GEMMA3} == {"gemma3", "gemma3_text"}
    assert (GEMMA3.arch, GEMMA3.media_attention, GEMMA3.media_positions) == ("gemma3", "bidirectional", "linear")


def test_registry_reads_the_explicit_lists():
    """The lookups read the tuples of edge.export.families; nothing registers itself on import."""
    from edge.export import families as builtin_families
    from edge.export import registry

    assert not hasattr(registry, "register") and not hasattr(registry, "_REGISTRY")
    assert list(families().values()) == list(builtin_families.FAMILIES)
    assert list(registry.speech_families().values()) == list(builtin_families.SPEECH_FAMILIES)
    assert registry.builtin().importers == builtin_families.IMPORTERS
    assert registry.spec_for("llava") is builtin_families.llava.SPEC
    assert registry.speech_spec_for("whisper") is builtin_families.whisper.SPEC
    assert registry.speech_spec_for("llava") is None
    assert registry.builtin() == registry.builtin()  # built afresh from the same lists: no state


def test_registry_refuses_duplicates_and_unknown_schemes():
    import dataclasses

    import pytest

    from edge.errors import ExportError
    from edge.export.families import FAMILIES, SPEECH_FAMILIES, llama, llava, whisper
    from edge.export.registry import make_registry, spec_for

    clash = dataclasses.replace(llava.SPEC, name="llava2", model_types=("llava2", "llama"))
    with pytest.raises(ValueError, match="model_type 'llama' is already registered by llama"):
        make_registry((llama.SPEC, clash))
    with pytest.raises(ValueError, match="model_type 'whisper' is already registered"):
        make_registry(FAMILIES, (whisper.SPEC, dataclasses.replace(whisper.SPEC, name="whisper2")))
    with pytest.raises(ValueError, match="'llava' is used twice"):
        make_registry((llava.SPEC, dataclasses.replace(llava.SPEC, model_types=("other",))))
    odd = dataclasses.replace(llava.SPEC, vision=dataclasses.replace(llava.SPEC.vision, scheme="nope"))
    with pytest.raises(ValueError, match="scheme 'nope', which the runtime does not have"):
        make_registry((odd,), SPEECH_FAMILIES)
    with pytest.raises(ExportError, match="unsupported model_type 'gpt9'.*whisper"):
        spec_for("gpt9")


def test_export_fails_when_the_preprocessing_names_another_scheme(tmp_path):
    import dataclasses
    from types import SimpleNamespace

    import pytest

    from edge.errors import ExportError
    from edge.export.families import llava
    from edge.export.vlm import _export_vision

    wrong = dataclasses.replace(llava.SPEC.vision, preprocess=lambda src, cfg: SimpleNamespace(scheme="anyres"))
    spec = dataclasses.replace(llava.SPEC, vision=wrong)
    with pytest.raises(ExportError, match="declares the image scheme 'clip' but its preprocessing names 'anyres'"):
        _export_vision(tmp_path, SimpleNamespace(path=tmp_path), spec, None, None, None, None, None)
