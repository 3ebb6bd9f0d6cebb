"""The native library's builds for tests, and a ctypes binding of its C API (edge/native/include/edge.h).

``native_build`` (Release) and ``native_asan_build`` (``-DEDGE_SANITIZE=ON``: AddressSanitizer with the
leak check + UndefinedBehaviorSanitizer) are session fixtures: each configures and builds the root
CMakeLists.txt once per test session (``-j2``, into a temporary directory, against the installed
llama-cpp-python with ``-DEDGE_PYTHON=sys.executable``) and returns the build directory. A build that
fails is a test failure under ``CI=true`` and a skip otherwise (a laptop without a compiler or without
llama.cpp's sources, ``python tests/fetch_llama_sources.py``). ``EDGE_NATIVE_BUILD`` /
``EDGE_NATIVE_ASAN_BUILD`` name an existing build directory to reuse instead (it is rebuilt
incrementally).

The builds are cached at module level too: test modules that import these fixtures each get their own
fixture definition from pytest, and the cache keeps that from building twice.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
_BUILDS: dict[str, Path] = {}
# the environment of sanitized processes: leaks fail them (exit code 23), UBSan stops at the first report
SANITIZER_ENV = {
    "ASAN_OPTIONS": "detect_leaks=1:exitcode=23:abort_on_error=0",
    "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1",
    # libgomp's threads spin while waiting: on shared CI cores that starves llama.cpp's own threads
    "OMP_WAIT_POLICY": "PASSIVE",
}


def _build(kind: str, tmp_path_factory) -> Path:
    if kind in _BUILDS:
        return _BUILDS[kind]
    env_name = "EDGE_NATIVE_ASAN_BUILD" if kind == "asan" else "EDGE_NATIVE_BUILD"
    build = Path(os.environ[env_name]) if os.environ.get(env_name) else tmp_path_factory.mktemp(f"native-{kind}")
    flags = ["-DCMAKE_BUILD_TYPE=Release", f"-DEDGE_PYTHON={sys.executable}"]
    if kind == "asan":
        flags.append("-DEDGE_SANITIZE=ON")
    steps = [
        ["cmake", "-S", str(ROOT), "-B", str(build), *flags],
        ["cmake", "--build", str(build), "-j2"],
    ]
    for cmd in steps:
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
        except (OSError, subprocess.TimeoutExpired) as exc:
            proc = subprocess.CompletedProcess(cmd, 1, "", str(exc))
        if proc.returncode:
            message = f"the native {kind} build failed ({' '.join(cmd[:2])}): {(proc.stderr or proc.stdout)[-3000:]}"
            if os.environ.get("CI") == "true":
                pytest.fail(message)
            pytest.skip(message)
    _BUILDS[kind] = build
    return build


@pytest.fixture(scope="session")
def native_build(tmp_path_factory) -> Path:
    """The Release build directory of edge/native (libedge.so, edge-native-run, the ctest tests)."""
    return _build("release", tmp_path_factory)


@pytest.fixture(scope="session")
def native_asan_build(tmp_path_factory) -> Path:
    """The ASan + UBSan build directory of edge/native."""
    return _build("asan", tmp_path_factory)


def built(build: Path, name: str) -> Path:
    """The path of a file the build made (a tool, ``libedge.so``); a test failure when it is missing."""
    hits = sorted(p for p in build.rglob(name) if p.is_file() and "CMakeFiles" not in p.parts)
    if not hits:
        pytest.fail(f"{name} was not built in {build}")
    return hits[0]


# --- ctypes binding of edge.h --------------------------------------------------------------------------


class Tensor(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_char_p),
        ("dtype", ctypes.c_int),
        ("ndim", ctypes.c_int32),
        ("shape", ctypes.POINTER(ctypes.c_int64)),
        ("data", ctypes.c_void_p),
    ]


class Tiles(ctypes.Structure):
    _fields_ = [
        ("pixels", Tensor),
        ("runs", ctypes.c_int64),
        ("run_ndim", ctypes.c_int32),
        ("run_shape", ctypes.POINTER(ctypes.c_int64)),
        ("n_extra", ctypes.c_int32),
        ("extra", ctypes.POINTER(Tensor)),
        ("out_tiles", ctypes.c_int64),
        ("out_rows", ctypes.c_int64),
        ("out_dim", ctypes.c_int64),
        ("info_json", ctypes.c_char_p),
    ]


ENCODER = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.POINTER(Tiles), ctypes.POINTER(ctypes.c_float))
ON_TOKEN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_int32, ctypes.c_char_p, ctypes.c_size_t)

VISION_AUTO, VISION_PROJECTOR, VISION_CALLBACK = 0, 1, 2


class SessionParams(ctypes.Structure):
    _fields_ = [
        ("n_ctx", ctypes.c_int32),
        ("n_batch", ctypes.c_int32),
        ("threads", ctypes.c_int32),
        ("max_tiles", ctypes.c_int32),
        ("max_image_tokens", ctypes.c_int32),
        ("max_upscale", ctypes.c_double),
        ("vision", ctypes.c_int),
        ("encoder", ENCODER),
        ("encoder_user_data", ctypes.c_void_p),
    ]


class GenerateParams(ctypes.Structure):
    _fields_ = [
        ("max_tokens", ctypes.c_int32),
        ("temperature", ctypes.c_float),
        ("top_k", ctypes.c_int32),
        ("top_p", ctypes.c_float),
        ("seed", ctypes.c_uint32),
    ]


class NativeError(Exception):
    """A failed libedge call: ``status`` (the edge_status name) and the library's message."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status, self.message = status, message


class Libedge:
    """libedge.so through ctypes, with the argument types of edge.h."""

    def __init__(self, path: Path) -> None:
        lib = self.lib = ctypes.CDLL(str(path))
        vp, cp, i32 = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int32
        sigs = {
            "edge_last_error": (cp, []),
            "edge_status_name": (cp, [ctypes.c_int]),
            "edge_bundle_open": (ctypes.c_int, [cp, ctypes.c_int, ctypes.POINTER(vp)]),
            "edge_bundle_close": (None, [vp]),
            "edge_bundle_info": (cp, [vp]),
            "edge_session_params_default": (None, [ctypes.POINTER(SessionParams)]),
            "edge_generate_params_default": (None, [ctypes.POINTER(GenerateParams)]),
            "edge_session_create": (ctypes.c_int, [vp, ctypes.POINTER(SessionParams), ctypes.POINTER(vp)]),
            "edge_session_close": (None, [vp]),
            "edge_session_add_image": (ctypes.c_int, [vp, vp, ctypes.c_size_t, i32, i32, ctypes.c_size_t]),
            "edge_session_add_text": (ctypes.c_int, [vp, cp]),
            "edge_session_add_message": (ctypes.c_int, [vp, cp, cp]),
            "edge_session_reset": (ctypes.c_int, [vp]),
            "edge_session_generate": (ctypes.c_int, [vp, ctypes.POINTER(GenerateParams), ON_TOKEN, vp]),
            "edge_session_cancel": (None, [vp]),
            "edge_session_finish_reason": (cp, [vp]),
            "edge_session_tokens": (ctypes.c_size_t, [vp, ctypes.POINTER(i32), ctypes.c_size_t]),
            "edge_session_result_json": (cp, [vp]),
        }
        for name, (res, args) in sigs.items():
            fn = getattr(lib, name)
            fn.restype, fn.argtypes = res, args

    def check(self, status: int) -> None:
        """Raise :class:`NativeError` for a status other than EDGE_OK."""
        if status != 0:
            raise NativeError(self.lib.edge_status_name(status).decode(), self.lib.edge_last_error().decode())


def tiles_array(tiles: Tiles) -> np.ndarray:
    """The pixel values a callback got, as a numpy array (a copy)."""
    t = tiles.pixels
    shape = tuple(t.shape[i] for i in range(t.ndim))
    count = int(np.prod(shape)) if shape else 0
    buf = (ctypes.c_float * count).from_address(t.data)
    return np.frombuffer(buf, np.float32).reshape(shape).copy()


class NativeSession:
    """One edge_session; ``encode(pixels) -> embeddings [tiles, rows, dim]`` is the encoder callback.

    Exceptions in the Python callback never cross into C: they become a non-zero return code (and are kept
    in :attr:`errors`)."""

    def __init__(self, lib: Libedge, bundle: Path, encode: Optional[Callable] = None, threads: int = 2,
                 vision: int = VISION_CALLBACK, n_ctx: int = 0) -> None:  # fmt: skip
        self.lib, self.errors, self.pixels = lib, [], []
        self.returned: list[np.ndarray] = []
        self._bundle, self._session = ctypes.c_void_p(), ctypes.c_void_p()
        lib.check(lib.lib.edge_bundle_open(str(bundle).encode(), 0, ctypes.byref(self._bundle)))
        params = SessionParams()
        lib.lib.edge_session_params_default(ctypes.byref(params))
        params.threads, params.vision, params.n_ctx = threads, vision, n_ctx
        self._encoder = ENCODER(self._on_tiles)  # kept alive as long as the session
        if encode is not None:
            params.encoder = self._encoder
        self._encode = encode
        self._token_cb = ON_TOKEN(self._on_token)
        self.streamed: list[tuple[int, bytes]] = []
        try:
            lib.check(lib.lib.edge_session_create(self._bundle, ctypes.byref(params), ctypes.byref(self._session)))
        except NativeError:
            lib.lib.edge_bundle_close(self._bundle)
            raise

    def _on_tiles(self, user, tiles_p, out) -> int:
        try:
            tiles = tiles_p.contents
            px = tiles_array(tiles)
            self.pixels.append(px)
            emb = np.ascontiguousarray(self._encode(px), dtype=np.float32)
            want = (tiles.out_tiles, tiles.out_rows, tiles.out_dim)
            if emb.shape != want:
                raise ValueError(f"the encoder gave {emb.shape}, the library wants {want}")
            self.returned.append(emb)
            ctypes.memmove(out, emb.ctypes.data, emb.nbytes)
            return 0
        except Exception as exc:  # noqa: BLE001 - nothing may propagate into C
            self.errors.append(exc)
            return 1

    def _on_token(self, user, token, text, size) -> int:
        self.streamed.append((int(token), ctypes.string_at(text, size) if size else b""))
        return 0

    def add_image(self, rgb: np.ndarray) -> None:
        rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
        h, w = rgb.shape[:2]
        self.lib.check(self.lib.lib.edge_session_add_image(self._session, rgb.ctypes.data, rgb.nbytes, w, h, w * 3))

    def add_text(self, text: str) -> None:
        self.lib.check(self.lib.lib.edge_session_add_text(self._session, text.encode()))

    def add_message(self, role: str, content: str) -> None:
        self.lib.check(self.lib.lib.edge_session_add_message(self._session, role.encode(), content.encode()))

    def generate(self, max_tokens: int = 8, temperature: float = 0.0, seed: int = 0) -> dict:
        """Generate; the result JSON of edge_session_result_json as a dict."""
        import json

        gp = GenerateParams()
        self.lib.lib.edge_generate_params_default(ctypes.byref(gp))
        gp.max_tokens, gp.temperature, gp.seed = max_tokens, temperature, seed
        self.lib.check(self.lib.lib.edge_session_generate(self._session, ctypes.byref(gp), self._token_cb, None))
        return json.loads(self.lib.lib.edge_session_result_json(self._session).decode())

    def close(self) -> None:
        if self._session:
            self.lib.lib.edge_session_close(self._session)
            self._session = ctypes.c_void_p()
        if self._bundle:
            self.lib.lib.edge_bundle_close(self._bundle)
            self._bundle = ctypes.c_void_p()
