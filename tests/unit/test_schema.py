"""The JSON Schema of manifest.json: generated from the dataclasses, shipped, complete, strict."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Literal, Optional, Union

import jsonschema
import pytest

from edge import checks
from edge.manifest import SCHEMA_VERSION, FileEntry, LLMSpec, Manifest, PromptLayout, TensorSpec, VisionSpec, union_tag
from edge.preprocess import PREPROCESS_SCHEMES, AnyresSlicing, Idefics3Slicing, ImagePreprocess, UhdSlicing
from edge.schema import _Generator, field_docs, json_schema, schema_text, shipped_schema_path


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def _manifest(preprocess: Any) -> dict:
    vision = VisionSpec(
        file="vision.onnx",
        dtype="f32",
        input=TensorSpec("pixel_values", "float32", [-1, 3, 8, 8]),
        output=TensorSpec("image_embeds", "float32", [-1, 4, 16]),
        tokens_per_image=4,
        embed_dim=16,
        preprocess=preprocess,
    )
    m = Manifest(
        name="demo",
        family="llava",
        files={"vision.onnx": FileEntry("vision.onnx", 3, "ab" * 32)},
        llm=LLMSpec(
            file="llm.gguf",
            arch="llama",
            dtype="f16",
            n_ctx_train=64,
            n_embd=16,
            n_vocab=10,
            bos_id=1,
            eos_ids=[2],
            add_bos=True,
        ),
        prompt=PromptLayout(),
        vision=vision,
        provenance={"parity": {"x": 1.0}},
    )
    return json.loads(m.to_json())


CLIP = ImagePreprocess(scheme="clip", image_size=8, shortest_edge=8, crop_height=8, crop_width=8)
ALL_SCHEMES = [CLIP, Idefics3Slicing(), AnyresSlicing(), UhdSlicing()]


def test_the_shipped_file_is_current():
    assert shipped_schema_path().read_text(encoding="utf-8") == schema_text(), (
        "edge/manifest.schema.json is stale: regenerate it with `python -m edge.schema --write`"
    )


def test_every_class_and_property_has_a_description():
    schema = json_schema()
    missing = []

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            if "properties" in node:
                if not node.get("description"):
                    missing.append(where)
                for name, prop in node["properties"].items():
                    if not prop.get("description"):
                        missing.append(f"{where}.{name}")
            for key, value in node.items():
                walk(value, f"{where}/{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{where}[{i}]")

    walk(schema, "#")
    assert not missing, f"give these a doc (a comment on the field's line): {missing}"


def test_schema_covers_every_scheme_and_version(validator):
    schema = json_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["properties"]["schema_version"]["const"] == SCHEMA_VERSION
    assert "schema_version" in schema["required"]
    variants = schema["$defs"]["VisionSpec"]["properties"]["preprocess"]["oneOf"]
    assert [v["$ref"].rsplit("/", 1)[1] for v in variants] == [c.__name__ for c in PREPROCESS_SCHEMES.values()]
    for tag, cls in PREPROCESS_SCHEMES.items():
        d = schema["$defs"][cls.__name__]
        assert d["properties"]["scheme"]["const"] == tag and "scheme" in d["required"]


@pytest.mark.parametrize("pp", ALL_SCHEMES, ids=lambda p: p.scheme)
def test_manifests_of_every_scheme_validate_and_round_trip(validator, pp):
    data = _manifest(pp)
    validator.validate(data)
    again = Manifest.from_json(json.dumps(data))
    assert again.vision.preprocess == pp and type(again.vision.preprocess) is type(pp)
    assert json.loads(again.to_json()) == data


@pytest.mark.parametrize(
    "edit",
    [
        lambda m: m["vision"]["preprocess"].update(scheme="tiles"),
        lambda m: m["vision"]["preprocess"].pop("scheme"),
        lambda m: m["vision"]["preprocess"].update(crop_width="8"),
        lambda m: m["vision"]["preprocess"].update(tile_size=8),  # a field of another scheme
        lambda m: m["vision"].update(slicing={}),  # schema 1's field
        lambda m: m.update(schema_version=1),
        lambda m: m.pop("files"),
        lambda m: m["llm"].update(eos_ids=[2.5]),
        lambda m: m["llm"].update(bos_id="1"),
        lambda m: m["files"]["vision.onnx"].pop("sha256"),
        lambda m: m["prompt"].update(image_marker=None),
    ],
    ids=[
        "unknown scheme",
        "no scheme",
        "wrong type",
        "other scheme's field",
        "slicing",
        "v1",
        "no files",
        "float id",
        "str id",
        "no sha256",
        "null marker",
    ],
)
def test_malformed_manifests_fail_validation(validator, edit):
    data = _manifest(CLIP)
    edit(data)
    assert list(validator.iter_errors(data))


def test_optional_components_may_be_null(validator):
    data = _manifest(CLIP)
    data.update(llm=None, vision=None, audio=None)
    validator.validate(data)
    data.pop("audio")
    validator.validate(data)  # a default may be left out


# ---- the generator on its own ---------------------------------------------------------


@dataclass(frozen=True)
class _Leaf:
    """A leaf."""

    kind: Literal["leaf"]  # the tag
    size: int = 3  # a trailing comment


@dataclass(frozen=True)
class _Other:
    """Another leaf."""

    kind: Literal["other"] = "other"
    """An attribute docstring."""


@dataclass(frozen=True)
class _Root:
    """The root."""

    # a comment above,
    # on two lines
    name: str
    mode: Literal["a", "b"] = "a"  # an enum
    maybe: Optional[float] = None  # a number or null
    items: list[int] = field(default_factory=lambda: [1, 2])  # an array
    table: dict[str, bool] = field(default_factory=dict)  # a map
    anything: Any = None  # any value
    leaf: Union[_Leaf, _Other, None] = None  # a tagged union
    nested: _Other = field(default_factory=_Other)  # a nested object


def test_generator_maps_every_kind_of_type():
    gen = _Generator()
    root = gen.object_schema(_Root)
    props = root["properties"]
    assert root["required"] == ["name"] and root["additionalProperties"] is False
    assert props["name"] == {"description": "a comment above, on two lines", "type": "string"}
    assert props["mode"] == {"description": "an enum", "type": "string", "enum": ["a", "b"], "default": "a"}
    assert props["maybe"]["anyOf"] == [{"type": "number"}, {"type": "null"}]
    assert props["items"] == {
        "description": "an array",
        "type": "array",
        "items": {"type": "integer"},
        "default": [1, 2],
    }
    assert props["table"]["additionalProperties"] == {"type": "boolean"}
    assert props["anything"] == {"description": "any value", "default": None}
    assert props["leaf"]["anyOf"] == [
        {"oneOf": [{"$ref": "#/$defs/_Leaf"}, {"$ref": "#/$defs/_Other"}]},
        {"type": "null"},
    ]
    assert props["nested"]["default"] == {"kind": "other"}
    assert gen.defs["_Leaf"]["required"] == ["kind"]  # no default: required
    assert gen.defs["_Other"]["required"] == ["kind"]  # a tag is required even with a default
    assert gen.defs["_Leaf"]["properties"]["kind"]["const"] == "leaf"
    assert gen.defs["_Other"]["description"] == "Another leaf."


def test_field_docs_read_comments_and_attribute_docstrings():
    assert field_docs(_Leaf) == {"kind": "the tag", "size": "a trailing comment"}
    assert field_docs(_Other) == {"kind": "An attribute docstring."}
    assert field_docs(_Root)["name"] == "a comment above, on two lines"


def test_union_tag_needs_one_value_literals():
    assert union_tag([_Leaf, _Other]) == ("kind", {"leaf": _Leaf, "other": _Other})
    assert union_tag([_Leaf, _Root]) is None
    assert union_tag([int, str]) is None


def test_unsupported_types_are_refused():
    @dataclass
    class Bad:
        """Bad."""

        pair: tuple[int, int]  # no tuples in JSON Schema here

    with pytest.raises(TypeError):
        _Generator().object_schema(Bad)


# ---- the contract's resample names and the runtime's filters ---------------------------


def test_resample_names_match_the_runtime_filters():
    from edge.runtime.vision.clip import RESAMPLE_FILTERS

    assert tuple(RESAMPLE_FILTERS) == checks.RESAMPLE_NAMES
    assert {int(f): name for name, f in RESAMPLE_FILTERS.items()} == checks.HF_RESAMPLE_CODES


def test_scheme_is_a_field():
    for pp in ALL_SCHEMES:
        assert dataclasses.asdict(pp)["scheme"] == pp.scheme
        assert [f.name for f in dataclasses.fields(pp)][0] == "scheme"
