"""Device flags given wrongly: each is one line on stderr and a non-zero exit, never a traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import run_cli


def _one_line_error(proc: subprocess.CompletedProcess, code: int, *words: str) -> str:
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, proc.stderr
    for word in words:
        assert word in errors[0], errors[0]
    return errors[0]


def _run(bundle, *flags: str) -> subprocess.CompletedProcess:
    return run_cli("run", str(bundle), "-p", "hi", "-n", "2", "-t", "2", *flags)


@pytest.mark.parametrize(
    "flags,words",
    [
        (["--device", "tpu"], ["unknown device 'tpu'"]),
        (["--device", "camera=cpu"], ["unknown component 'camera'"]),
        (["--device", "llm=npu"], ["llama.cpp has no NPU backend"]),
        (["--provider", "warp"], ["unknown execution provider 'warp'"]),
        (["--provider", "qnn:soc_model"], ["must be key=value"]),
        (["--provider", "cuda:device_id=0,device_id=1"], ["given twice"]),
        (["--fallback", "maybe"], ["unknown fallback 'maybe'"]),
        (["--gpu-layers", "lots"], ["--gpu-layers must be auto or a number"]),
        (["--device", "npu", "--provider", "qnn"], ["not both"]),
    ],
)
def test_bad_device_flags(tiny_llava_bundle, flags, words):
    _one_line_error(_run(tiny_llava_bundle, *flags), 2, *words)


def test_a_missing_provider_package_says_what_to_install(tiny_llava_bundle):
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has CUDA")
    _one_line_error(_run(tiny_llava_bundle, "--provider", "cuda"), 2, "onnxruntime-gpu")
    _one_line_error(_run(tiny_llava_bundle, "--device", "vision=gpu"), 2, "pip install onnxruntime-gpu")


def test_a_missing_npu_package_says_what_to_install(tiny_llava_bundle):
    """onnxruntime-qnn made unimportable in the child process, as on a machine without it."""
    code = (
        "import sys; sys.modules['onnxruntime_qnn'] = None; from edge.apps.cli import main; "
        f"sys.exit(main(['run', {str(tiny_llava_bundle)!r}, '-p', 'hi', '-n', '2', '--device', 'npu']))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    _one_line_error(proc, 2, "edge-mllm[npu]", "onnxruntime-qnn")


def test_an_llm_gpu_without_a_gpu_backend_says_how_to_build_one(tiny_llava_bundle):
    from edge.runtime.llama_backend import gpu_devices

    if gpu_devices():
        pytest.skip("llama.cpp here has a GPU")
    _one_line_error(_run(tiny_llava_bundle, "--gpu-layers", "4"), 2, "CMAKE_ARGS")
    _one_line_error(_run(tiny_llava_bundle, "--device", "llm=gpu"), 2, "no GPU backend")


def test_fallback_error_names_the_first_unsupported_operators(tiny_llava_bundle, photo):
    pytest.importorskip("onnxruntime_qnn", reason="the QNN HTP emulator (npu extra)")
    # the f32 graph is not for an NPU: the HTP takes almost none of it
    proc = _run(tiny_llava_bundle, "-i", str(photo), "--device", "npu", "--fallback", "error")
    line = _one_line_error(proc, 2, "cannot run whole on QNNExecutionProvider", "unsupported operators")
    assert "Conv" in line or "Shape" in line
    # with the default fallback it runs, and the warning names what fell back
    ok = _run(tiny_llava_bundle, "-i", str(photo), "--device", "npu", "--json")
    assert ok.returncode == 0 and "execution provider fallback" in ok.stderr


def test_compile_refuses_a_bundle_that_is_not_static_qdq(tiny_llava_bundle, tmp_path):
    proc = run_cli("compile", str(tiny_llava_bundle), "-o", str(tmp_path / "c"))
    _one_line_error(proc, 2, "compile a static QDQ bundle")
    proc = run_cli("compile", str(tiny_llava_bundle), "-o", str(tmp_path / "c"), "--target", "tpu")
    _one_line_error(proc, 2, "unknown compile target 'tpu'")
    proc = run_cli("compile", str(tiny_llava_bundle), "-o", str(tmp_path / "c"), "--soc", "sd8")
    _one_line_error(proc, 2, "--soc must be")
    assert not (tmp_path / "c").exists()


def test_doctor_says_where_a_bundle_would_run(tiny_llava_bundle):
    import json

    proc = run_cli("doctor", str(tiny_llava_bundle), "--json")
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)["placement"]
    assert plan["vision"]["graph"] == "vision.onnx" and plan["vision"]["reason"].startswith("auto")
    assert plan["llm"]["device"] in ("cpu", "gpu")
    text = run_cli("doctor", str(tiny_llava_bundle), "--device", "cpu")
    assert text.returncode == 0 and "placement: vision: cpu (CPUExecutionProvider) asked for" in text.stdout


@pytest.mark.parametrize("command", ["serve", "live"])
def test_serve_and_live_take_the_device_flags(tiny_llava_bundle, command, tmp_path):
    """The later surfaces read --device like run does: a bad one fails before anything starts."""
    extra = ["--port", "0"]
    if command == "live":
        import cv2
        import numpy as np

        video = tmp_path / "still.avi"
        writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5, (32, 32))
        for _ in range(5):
            writer.write(np.full((32, 32, 3), 128, np.uint8))
        writer.release()
        extra = ["--video", str(video)]
    proc = run_cli(command, str(tiny_llava_bundle), *extra, "--device", "tpu")
    _one_line_error(proc, 2, "unknown device 'tpu'")
