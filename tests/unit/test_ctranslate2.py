"""Reading CTranslate2 model.bin files: the header checks and malformed files."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from edge.errors import ExportError
from edge.export.builders.tiny_whisper import whisper_tiny_en_dir
from edge.export.speech.ctranslate2 import is_ctranslate2_dir, read_model_bin


def _string(s: str) -> bytes:
    raw = s.encode() + b"\0"
    return struct.pack("<H", len(raw)) + raw


def _model_bin(variables: dict[str, np.ndarray], version: int = 6, spec: str = "WhisperSpec", aliases=()) -> bytes:
    codes = {np.dtype(np.float32): 0, np.dtype(np.int8): 1, np.dtype(np.float16): 4}
    out = struct.pack("<I", version) + _string(spec) + struct.pack("<I", 3) + struct.pack("<I", len(variables))
    for name, v in variables.items():
        out += _string(name) + struct.pack("<B", v.ndim) + b"".join(struct.pack("<I", d) for d in v.shape)
        out += struct.pack("<B", codes[v.dtype]) + struct.pack("<I", v.nbytes) + v.tobytes()
    out += struct.pack("<I", len(aliases)) + b"".join(_string(a) + _string(t) for a, t in aliases)
    return out


def test_reads_variables_and_aliases(tmp_path):
    w = np.arange(6, dtype=np.float16).reshape(2, 3)
    (tmp_path / "model.bin").write_bytes(
        _model_bin({"a/weight": w, "n": np.array(3, np.int8)}, aliases=[("b/weight", "a/weight")])
    )
    spec, rev, v = read_model_bin(tmp_path / "model.bin")
    assert (spec, rev) == ("WhisperSpec", 3)
    np.testing.assert_array_equal(v["a/weight"], w)
    assert v["b/weight"] is v["a/weight"] and int(v["n"]) == 3
    assert is_ctranslate2_dir(tmp_path)


@pytest.mark.parametrize("cut", [3, 20, 60])
def test_truncated_or_unknown_files_are_export_errors(tmp_path, cut):
    data = _model_bin({"a/weight": np.ones((4, 4), np.float32)})
    (tmp_path / "model.bin").write_bytes(data[:cut])
    with pytest.raises(ExportError):
        read_model_bin(tmp_path / "model.bin")
    (tmp_path / "model.bin").write_bytes(_model_bin({}, version=2))
    with pytest.raises(ExportError, match="binary version"):
        read_model_bin(tmp_path / "model.bin")


def test_only_whisper_specs_are_imported(tmp_path):
    from edge.export.speech.ctranslate2 import convert

    (tmp_path / "model.bin").write_bytes(_model_bin({"x": np.zeros(2, np.float32)}, spec="TransformerSpec"))
    (tmp_path / "tokenizer.json").write_text("{}")
    with pytest.raises(ExportError, match="Whisper models only"):
        convert(tmp_path, tmp_path / "out")


def test_detection(tmp_path):
    assert not is_ctranslate2_dir(tmp_path)
    (tmp_path / "model.bin").write_bytes(b"PK\x03\x04 a zip, not CTranslate2")
    assert not is_ctranslate2_dir(tmp_path)
    assert is_ctranslate2_dir(whisper_tiny_en_dir())


def test_the_packaged_tiny_en_reads(tmp_path):
    spec, _, v = read_model_bin(whisper_tiny_en_dir() / "model.bin")
    assert spec == "WhisperSpec" and v["decoder/embeddings/weight"].shape == (51864, 384)
    assert v["decoder/projection/weight"] is v["decoder/embeddings/weight"]  # tied, stored once
