"""The JSON Schema (draft 2020-12) of ``manifest.json``, generated from the contract's dataclasses.

The dataclasses of :mod:`edge.manifest` and :mod:`edge.preprocess` are the one definition
of a bundle; this module turns them into a JSON Schema so that a reader in another
language can validate a manifest before it trusts it. The package ships the result as
``edge/manifest.schema.json`` (a unit test fails when that file is stale; regenerate it
with ``python -m edge.schema --write``); ``edge inspect --schema`` prints it.

Mapping: ``int``/``float``/``str``/``bool`` -> integer/number/string/boolean, ``Any`` ->
any value, ``Optional[X]`` -> X or null, ``list[X]`` -> array, ``dict[str, X]`` -> object
of X, ``Literal`` -> ``const``/``enum``, a dataclass -> ``$ref`` to its ``$defs`` entry,
a union of dataclasses tagged by a one-value ``Literal`` field (``scheme``) -> ``oneOf``
(the tag is required in each variant). Fields without a default are required, others
carry their ``default``. Descriptions come from the class docstrings and, per field, from
an attribute docstring, a comment at the end of the field's line, or the comment lines
right above it. Objects admit no other properties: a writer's typo fails validation
(edge's own reader ignores unknown keys).
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import io
import json
import re
import sys
import textwrap
import tokenize
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union

from edge.manifest import SCHEMA_VERSION, Manifest, union_tag

__all__ = ["SCHEMA_FILE", "json_schema", "schema_text", "shipped_schema_path", "field_docs", "class_doc"]

SCHEMA_FILE = "manifest.schema.json"
DRAFT = "https://json-schema.org/draft/2020-12/schema"


def json_schema() -> dict:
    """The JSON Schema of ``manifest.json`` (this edge's ``SCHEMA_VERSION``), as a dict."""
    gen = _Generator()
    root = gen.object_schema(Manifest)
    root["properties"]["schema_version"] = {
        "description": root["properties"]["schema_version"]["description"],
        "const": SCHEMA_VERSION,
    }
    if "schema_version" not in root["required"]:
        root["required"].append("schema_version")
    return {
        "$schema": DRAFT,
        "$id": f"urn:edge-mllm:manifest:{SCHEMA_VERSION}",
        "title": f"edge bundle manifest (schema_version {SCHEMA_VERSION})",
        **root,
        "$defs": gen.defs,
    }


def schema_text() -> str:
    """:func:`json_schema` as the text of the shipped ``manifest.schema.json``."""
    return json.dumps(json_schema(), indent=2, ensure_ascii=False) + "\n"


def shipped_schema_path() -> Path:
    """Where the package keeps its ``manifest.schema.json``."""
    return Path(__file__).with_name(SCHEMA_FILE)


def class_doc(cls: type) -> str:
    """A dataclass's docstring, cleaned (empty when it has none of its own)."""
    doc = cls.__dict__.get("__doc__") or ""
    if doc.startswith(f"{cls.__name__}("):  # the signature dataclasses writes for an undocumented class
        return ""
    return _plain(inspect.cleandoc(doc))


@functools.lru_cache(maxsize=None)
def field_docs(cls: type) -> dict[str, str]:
    """The short doc of each field of a dataclass, read from its source.

    A field's doc is the string literal right after it (an attribute docstring), else the
    comment at the end of its line, else the comment lines right above it.
    """
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    lines = source.splitlines()
    comments = {
        tok.start[0]: tok.string.lstrip("#").strip()
        for tok in tokenize.generate_tokens(io.StringIO(source).readline)
        if tok.type == tokenize.COMMENT
    }
    body = ast.parse(source).body[0].body
    docs: dict[str, str] = {}
    for i, node in enumerate(body):
        if not isinstance(node, ast.AnnAssign) or not isinstance(node.target, ast.Name):
            continue
        after = body[i + 1] if i + 1 < len(body) else None
        trailing = [comments[n] for n in range(node.lineno, node.end_lineno + 1) if n in comments]
        above, n = [], node.lineno - 1
        while n >= 1 and n in comments and lines[n - 1].lstrip().startswith("#"):
            above.insert(0, comments[n])
            n -= 1
        if isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant) and isinstance(after.value.value, str):
            doc = inspect.cleandoc(after.value.value)
        elif trailing:
            doc = trailing[-1]
        else:
            doc = " ".join(above)
        if doc:
            docs[node.target.id] = _plain(doc)
    return docs


def _plain(text: str) -> str:
    """reStructuredText markup as plain text: ``:class:`~a.B``` -> ```B```, double backquotes -> single."""

    def role(m: re.Match) -> str:
        name = m.group(2)
        return f"`{name if m.group(1) == 'mod' else name.rsplit('.', 1)[-1]}`"

    text = re.sub(r":([a-z]+):`~?([^`]+)`", role, text)
    return text.replace("``", "`")


class _Generator:
    """Walks the dataclasses from :class:`Manifest` down, collecting ``$defs``."""

    def __init__(self) -> None:
        self.defs: dict[str, dict] = {}

    def object_schema(self, cls: type) -> dict:
        hints = typing.get_type_hints(cls)
        docs = field_docs(cls)
        props: dict[str, dict] = {}
        required: list[str] = []
        for f in dataclasses.fields(cls):
            tp = hints[f.name]
            prop = {"description": docs.get(f.name, ""), **self.type_schema(tp)}
            default = _default(f)
            is_tag = typing.get_origin(tp) is Literal and len(typing.get_args(tp)) == 1
            if default is dataclasses.MISSING or is_tag:
                required.append(f.name)
            if default is not dataclasses.MISSING:
                prop["default"] = default
            props[f.name] = prop
        return {
            "type": "object",
            "description": class_doc(cls),
            "properties": props,
            "required": required,
            "additionalProperties": False,
        }

    def ref(self, cls: type) -> dict:
        name = cls.__name__
        if name not in self.defs:
            self.defs[name] = {}  # placeholder first: a class may refer to itself
            self.defs[name] = {"title": name, **self.object_schema(cls)}
        return {"$ref": f"#/$defs/{name}"}

    def type_schema(self, tp: Any) -> dict:
        origin, args = typing.get_origin(tp), typing.get_args(tp)
        if tp is Any:
            return {}
        if origin in (Union, types.UnionType):
            inner = [a for a in args if a is not type(None)]
            if len(inner) == 1:
                schema = self.type_schema(inner[0])
            elif union_tag(inner) is not None:
                schema = {"oneOf": [self.ref(v) for v in inner]}
            else:
                raise TypeError(f"only tagged unions of dataclasses are supported, got {tp}")
            return {"anyOf": [schema, {"type": "null"}]} if len(inner) < len(args) else schema
        if origin is Literal:
            values = list(args)
            kinds = {_JSON_TYPES[type(v)] for v in values}
            out: dict = {"type": kinds.pop()} if len(kinds) == 1 else {}
            return {**out, "const": values[0]} if len(values) == 1 else {**out, "enum": values}
        if dataclasses.is_dataclass(tp):
            return self.ref(tp)
        if origin is list or tp is list:
            return {"type": "array", "items": self.type_schema(args[0])} if args else {"type": "array"}
        if origin is dict or tp is dict:
            if args and args[0] is not str:
                raise TypeError(f"JSON object keys are strings, got {tp}")
            return {"type": "object", "additionalProperties": self.type_schema(args[1])} if args else {"type": "object"}
        if tp in _JSON_TYPES:
            return {"type": _JSON_TYPES[tp]}
        raise TypeError(f"no JSON Schema for the type {tp}")


_JSON_TYPES = {bool: "boolean", int: "integer", float: "number", str: "string"}


def _default(f: dataclasses.Field) -> Any:
    """A field's default as plain JSON, or ``MISSING``."""
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
    else:
        return dataclasses.MISSING
    return dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value


def main(argv: list[str]) -> int:
    """``python -m edge.schema``: print the schema; ``--write``: regenerate the shipped file."""
    if argv == ["--write"]:
        shipped_schema_path().write_text(schema_text(), encoding="utf-8")
        print(f"wrote {shipped_schema_path()}")
        return 0
    if argv:
        print("usage: python -m edge.schema [--write]", file=sys.stderr)
        return 2
    sys.stdout.write(schema_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
