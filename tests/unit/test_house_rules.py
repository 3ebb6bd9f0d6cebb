"""The house rules that code review would otherwise have to remember (shared/DESIGN.md, docs/design.md)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {"edge": "edge", "runtime": "edge.runtime", "export": "edge.export", "quantize": "edge.quantize",
            "apps": "edge.apps", "benchmarks": "edge.benchmarks"}  # fmt: skip
# layer of each import prefix; a module may import its own layer or a lower one
LAYERS = {"edge": 0, "edge.runtime": 1, "edge.export": 2, "edge.quantize": 2, "edge.benchmarks": 3, "edge.apps": 4}


def _modules() -> list[tuple[Path, str]]:
    out = []
    for folder, package in PACKAGES.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT / folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            out.append((path, ".".join([package, *parts])))
    return out


def _imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.append(node.module)
    return names


def _layer(module: str) -> int:
    best = max((p for p in LAYERS if module == p or module.startswith(p + ".")), key=len)
    return LAYERS[best]


def test_no_module_over_400_lines_without_a_reason():
    files = [p for p, _ in _modules()] + sorted((ROOT / "tests").rglob("*.py"))
    long = [p for p in files if len(p.read_text(encoding="utf-8").splitlines()) > 400]
    unexplained = [str(p.relative_to(ROOT)) for p in long if "Over 400 lines on purpose" not in p.read_text()[:1500]]
    assert not unexplained


def test_module_names_are_unique():
    seen: dict[str, Path] = {}
    for path, _ in _modules():
        if path.name in ("__init__.py", "__main__.py"):
            continue
        assert path.name not in seen, (path, seen.get(path.name))
        seen[path.name] = path


@pytest.mark.parametrize(
    "library,owners",
    [
        ("onnxruntime", {"edge.runtime.onnx_backend"}),
        ("llama_cpp", {"edge.runtime.llama_backend", "edge.runtime.mtmd_backend"}),
    ],
)
def test_each_backend_library_is_imported_in_one_runtime_module(library, owners):
    """Each backend library has its one runtime wrapper. llama.cpp has two libraries behind ``llama_cpp``:
    libllama (``llama_backend``, the LLM) and libmtmd (``mtmd_backend``: llama.cpp's own multimodal
    path, which checks and runs the bundle's mmproj GGUF the way llama.cpp's tools do); no other
    runtime module may import it."""
    users = {m for p, m in _modules() if m.startswith("edge.runtime") and any(
        i == library or i.startswith(library + ".") for i in _imports(p))}  # fmt: skip
    assert users == owners


def test_runtime_never_imports_torch_or_transformers():
    for path, module in _modules():
        if module.startswith(("edge.runtime", "edge.options", "edge.events", "edge.manifest")):
            assert not {i.split(".")[0] for i in _imports(path)} & {"torch", "transformers"}, module


def test_imports_only_point_down_at_module_level():
    for path, module in _modules():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
        for node in top:
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            for name in names:
                if name.startswith("edge.") and name != "edge":
                    assert _layer(name) <= _layer(module), f"{module} imports {name} at module level"


def test_runtime_reads_no_environment():
    for path, module in _modules():
        if module.startswith(("edge.runtime", "edge.export", "edge.quantize")) or module == "edge":
            text = path.read_text(encoding="utf-8")
            assert not re.search(r"os\.environ|os\.getenv", text), module
