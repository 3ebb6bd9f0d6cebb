"""ONNX graphs on onnxruntime, for vision and speech alike. This is the only module that imports ``onnxruntime``.

Over 400 lines on purpose: house rule 3 keeps every call into onnxruntime here (sessions, the
log relay, plugin execution providers, device discovery, NPU context compilation, and the
sessions' memory: the heap they leave behind is handed back here, where they are built and closed).

Nothing onnxruntime says is thrown away. Its native log goes to the process's stderr (file
descriptor 2, not ``sys.stderr``), and its Python binding offers no log callback, so while a
session is being built (graph loading, optimisation, node placement: where its warnings come
from) fd 2 is pointed at a temporary file; each line is then parsed and re-issued on the
``edge.onnxruntime`` logger at its own level (``[W:...]`` -> WARNING, ``[E:...]`` -> ERROR,
verbose and info chatter -> DEBUG). Lines that are not onnxruntime's (another thread writing
meanwhile) are written back to stderr. The session is built at onnxruntime's verbose level
because that is the only level at which it logs node placement, from which the
:class:`~edge.events.Placement` of each session is read; a fallback (a provider that was asked
for but not registered, or nodes that do not run on the provider asked for first) is logged as
a warning and kept in :attr:`Session.placement`.

Runs keep onnxruntime's log at its fatal level only: a failed run raises, and its message
becomes our one-line :class:`~edge.errors.RuntimeFailure`.

Memory: building a session parses the whole graph file into a protobuf and, for a graph
whose weights are stored in f16 (``--dtype f16``), constant-folds each f16 -> f32 ``Cast``
into a new f32 initializer; the protobuf and the f16 copies are freed once the session is
built, but glibc keeps that freed heap mapped, so the process would carry ~the graph file's
size for nothing. :func:`release_heap` (``malloc_trim``) hands it back after every session is
built and after :meth:`Session.close` (docs/performance.md has the figures).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import tempfile
import threading
from pathlib import Path
from types import MappingProxyType
from typing import Iterator, Mapping, Optional, Sequence

import numpy as np
import onnxruntime as ort

from edge.errors import BundleError, InputError, RuntimeFailure
from edge.events import Placement
from edge.manifest import MANIFEST_NAME, Manifest
from edge.options import CPU, OnnxOptions, Provider
from edge.runtime.cpu import onnx_threads
from edge.runtime.devices import INSTALL, EpDevice, onnx_choice

LOG = logging.getLogger("edge.onnxruntime")

# fd 2 belongs to the whole process: two threads redirecting it at once would restore it wrongly.
# The lock holds no data; it only orders the redirections.
_FD2_LOCK = threading.Lock()
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
# 2024-01-01 12:00:00.123456789 [W:onnxruntime:logid, file.cc:123 Function] message
_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+ \[([VIWEF]):onnxruntime:[^,\]]*, ([^\]]*)\] ?(.*)$")
_LEVELS = MappingProxyType(
    {"V": logging.DEBUG, "I": logging.DEBUG, "W": logging.WARNING, "E": logging.ERROR, "F": logging.CRITICAL}
)
# session_state.cc VerifyEachNodeIsAssignedToAnEp, at the verbose level
_PLACED = re.compile(r"(?:All nodes|Node\(s\)) placed on \[([^\]]+)\]\. Number of nodes: (\d+)")


# onnxruntime's lines naming the nodes of a placement (session_state.cc) and a QNN refusal
_NODE = re.compile(r"^\s+(\S+) \((.*)\)$")
_UNSUPPORTED = re.compile(r"Unsupported nodes in [^:]*: (.*)$")
_UNSUPPORTED_NODE = re.compile(r"\{ name: ([^,]*), type: ([^ }]*) \}")

# the QNN libraries print this to the process's stderr when they start
_QNN_CHATTER = re.compile(r"^\s*# LIBNATIVE:")
# onnxruntime-qnn's warnings about features this platform lacks: nothing the user can act on
_BENIGN = re.compile(r"File mapped weights feature is only available|EPContext encryption config unavailable")
# Plugin execution providers (onnxruntime's EP library API): the Python package that ships the
# library, and what to install. They are registered with onnxruntime when first asked for.
PLUGINS: Mapping[str, tuple[str, str]] = MappingProxyType({"QNNExecutionProvider": ("onnxruntime_qnn", INSTALL["npu"])})
# what to install for a provider the onnxruntime package here lacks
_INSTALL_EP: Mapping[str, str] = MappingProxyType(
    {
        "CUDAExecutionProvider": "pip install onnxruntime-gpu in place of onnxruntime (NVIDIA CUDA 12)",
        "TensorrtExecutionProvider": "pip install onnxruntime-gpu in place of onnxruntime, with TensorRT",
        "DmlExecutionProvider": "pip install onnxruntime-directml in place of onnxruntime (Windows)",
        "CoreMLExecutionProvider": "install onnxruntime's macOS wheel (pip install onnxruntime on a Mac)",
        "OpenVINOExecutionProvider": "pip install onnxruntime-openvino in place of onnxruntime (Intel CPU/iGPU/NPU)",
        "ROCMExecutionProvider": "install onnxruntime built with ROCm (AMD's wheels)",
        "MIGraphXExecutionProvider": "install onnxruntime built with MIGraphX (AMD's wheels)",
    }
)
# the compile targets of `edge compile`, by the provider that runs their context
TARGETS: Mapping[str, str] = MappingProxyType({"qnn-htp": "QNNExecutionProvider"})


def available_providers() -> list[str]:
    """Execution providers this onnxruntime build offers, plugin providers once registered."""
    names = list(ort.get_available_providers())
    plugins = [d.ep_name for d in ort.get_ep_devices() if d.ep_name not in names]
    return list(dict.fromkeys(plugins)) + names


def installed_plugins() -> dict[str, str]:
    """The plugin execution providers whose package is installed: provider name -> version."""
    found = {}
    for name, (module, _) in PLUGINS.items():
        with contextlib.suppress(ImportError):
            found[name] = str(getattr(__import__(module), "__version__", "?"))
    return found


def ep_devices() -> list[EpDevice]:
    """The devices onnxruntime can run each execution provider on, after registering every
    installed plugin provider (``edge doctor``, the ``auto`` rule)."""
    for name in installed_plugins():
        _plugin_devices(name)
    plugin_names = {n: m for n, (m, _) in PLUGINS.items()}
    return [
        EpDevice(d.ep_name, d.device.type.name, str(d.device.vendor or d.ep_vendor), plugin_names.get(d.ep_name, ""))
        for d in ort.get_ep_devices()
    ]


def _plugin_devices(name: str) -> list:
    """The ``OrtEpDevice`` list of plugin provider ``name``, registering its library first (once
    per process: onnxruntime keeps the registration); an :class:`InputError` naming what to
    install when its package is missing."""
    devices = [d for d in ort.get_ep_devices() if d.ep_name == name]
    if devices:
        return devices
    module, install = PLUGINS[name]
    try:
        lib = __import__(module)
    except ImportError:
        raise InputError(f"{name} needs the {module.replace('_', '-')} package: {install}") from None
    with _stderr_captured(stdout=True) as lines:
        try:
            ort.register_execution_provider_library(name, lib.get_library_path())
        except Exception as exc:  # onnxruntime raises its own types
            raise RuntimeFailure(f"onnxruntime cannot load {name} from {module}: {str(exc).strip()[:200]}") from None
    relay_log(lines, name)
    devices = [d for d in ort.get_ep_devices() if d.ep_name == name]
    if not devices:
        raise InputError(f"{name} is installed but reports no device here")
    return devices


def _check_present(names: Sequence[str]) -> None:
    available = ort.get_available_providers()
    for name in names:
        if name in available:
            continue
        if name in PLUGINS:
            _plugin_devices(name)
            continue
        hint = _INSTALL_EP.get(name)
        if hint:
            raise InputError(f"onnxruntime has no {name} here: {hint} (see `edge doctor`)")
        raise InputError(f"onnxruntime has no {name} here (has {', '.join(available)}; see `edge doctor`)")


def _with_defaults(provider: Provider) -> Provider:
    """QNN's defaults here: the HTP (NPU) backend of the installed package, and the graph's
    input/output quantization on the NPU too (onnxruntime-qnn otherwise leaves those two nodes on
    the CPU, a fallback for nothing)."""
    if provider.name != "QNNExecutionProvider":
        return provider
    options = dict(provider.options)
    if "backend_path" not in options and "backend_type" not in options:
        options["backend_path"] = __import__("onnxruntime_qnn").get_qnn_htp_path()
    options.setdefault("offload_graph_io_quantization", "0")
    return Provider(provider.name, options)


def _manifest_near(path: Path) -> Optional[Manifest]:
    """The manifest of the bundle ``path`` is in, or None for a graph outside a bundle."""
    try:
        return Manifest.from_json((path.parent / MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, BundleError):
        return None


def graph_dtype(path: Path) -> str:
    """The manifest's ``dtype`` of the component whose graph is ``path`` ("" if unknown)."""
    m = _manifest_near(Path(path))
    if m is None:
        return ""
    if m.vision is not None and m.vision.file == Path(path).name:
        return m.vision.dtype
    if m.audio is not None and Path(path).name in (m.audio.encoder, m.audio.decoder):
        return m.audio.dtype
    return ""


def compiled_contexts(path: Path) -> list[dict]:
    """The compiled contexts ``edge compile`` recorded for the graph ``path``
    (``provenance.compiled`` of its bundle: graph, target, provider, file, soc_model...)."""
    m = _manifest_near(Path(path))
    entries = (m.provenance.get("compiled") or []) if m is not None else []
    return [e for e in entries if isinstance(e, dict) and e.get("graph") == Path(path).name]


def _context_or_graph(path: Path, provider: Provider, strict: bool) -> tuple[Path, str]:
    """The EPContext model to open for ``provider`` if the bundle has one for it, else ``path``.

    The device's SoC is the provider's ``soc_model`` option when it is given; a context compiled
    for another SoC is refused with ``strict`` and otherwise skipped (with a warning) for the
    QDQ graph, which the provider compiles at start-up. Without ``soc_model`` the context is
    used, and the QNN library on the device checks it itself.
    """
    for entry in compiled_contexts(path):
        if entry.get("provider") != provider.name:
            continue
        want, made = provider.options.get("soc_model"), str(entry.get("soc_model", ""))
        if want is not None and made and want != made:
            text = (
                f"{entry.get('file')} was compiled for SoC {made}, this device is SoC {want} (soc_model): "
                f"run `edge compile --soc {want}` or open the bundle with --fallback cpu to use the QDQ graph"
            )
            if strict:
                raise BundleError(text)
            LOG.warning("%s: %s", path.name, text)
            return path, ""
        ctx = path.parent / str(entry.get("file"))
        if ctx.is_file():
            return ctx, ctx.name
    return path, ""


def compile_context(src: Path, dst: Path, provider: Provider, threads: int = 0) -> float:
    """Compile ``src`` for ``provider`` (an NPU) into the EPContext model ``dst`` (the context
    binary embedded), refusing a graph the provider cannot take whole; return the seconds
    the compilation took."""
    import time

    provider = _with_defaults(provider)
    so = ort.SessionOptions()
    so.log_severity_level = 0
    so.intra_op_num_threads = threads or onnx_threads()
    for key, value in (
        ("ep.context_enable", "1"),
        ("ep.context_file_path", str(dst)),
        ("ep.context_embed_mode", "1"),
        ("session.disable_cpu_ep_fallback", "1"),
    ):
        so.add_session_config_entry(key, value)
    so.add_provider_for_devices(_plugin_devices(provider.name), dict(provider.options))
    failure = None
    t0 = time.perf_counter()
    with _stderr_captured(stdout=True) as lines:
        try:
            ort.InferenceSession(str(src), sess_options=so)
        except Exception as exc:  # onnxruntime raises its own exception types
            failure = exc
    seconds = time.perf_counter() - t0
    relay_log(lines, Path(src).name)
    if failure is not None:
        unsupported = unsupported_ops(lines)
        if unsupported or "explicitly disabled" in str(failure):
            raise InputError(_refusal(Path(src).name, provider.name, unsupported)) from None
        raise RuntimeFailure(f"onnxruntime cannot compile {Path(src).name}: {str(failure).strip()[:200]}") from None
    if not Path(dst).is_file():
        raise RuntimeFailure(f"{provider.name} wrote no context for {Path(src).name}")
    return seconds


class GraphPlacement(Placement):
    """A :class:`~edge.events.Placement` with what the device choice said: the device
    (``cpu``/``gpu``/``npu``; "" for explicit providers), the rule's reason, the operator types
    of nodes that run elsewhere than the first provider, by provider, and the compiled
    context file opened instead of the graph (""). A provider's fused subgraph (QNN) counts
    as one node in ``nodes``."""

    def __init__(
        self,
        graph: str,
        requested: tuple[str, ...],
        providers: tuple[str, ...],
        nodes: tuple[tuple[str, int], ...] = (),
        device: str = "",
        reason: str = "",
        ops: tuple[tuple[str, tuple[str, ...]], ...] = (),
        context: str = "",
    ) -> None:
        super().__init__(graph, requested, providers, nodes)
        for key, value in (("device", device), ("reason", reason), ("ops", ops), ("context", context)):
            object.__setattr__(self, key, value)

    def as_dict(self) -> dict:
        """Placement's JSON form, plus ``device``, ``reason``, ``fallback_ops`` and ``context``."""
        out = super().as_dict()
        preferred = self.requested[0] if self.requested else None
        out["device"] = self.device
        out["reason"] = self.reason
        out["fallback_ops"] = {p: sorted(set(found)) for p, found in self.ops if p != preferred}
        out["context"] = self.context
        return out


def placed_ops(lines: Sequence[str]) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """The operator types onnxruntime's verbose placement lists under each provider."""
    out: dict[str, list[str]] = {}
    current = None
    for raw in lines:
        match = _LINE.match(_ANSI.sub("", raw).rstrip())
        if not match:
            continue
        text = match.group(3)
        hit = _PLACED.search(text)
        if hit:
            current = hit.group(1)
            out.setdefault(current, [])
            continue
        node = _NODE.match(text) if current is not None and "VerifyEachNodeIsAssignedToAnEp" in match.group(2) else None
        if node:
            out[current].append(node.group(1))
        else:
            current = None
    return tuple((p, tuple(found)) for p, found in out.items())


def unsupported_ops(lines: Sequence[str]) -> list[str]:
    """``Type (node name)`` of each node a provider reported it cannot run (QNN's refusal lines)."""
    found: list[str] = []
    for raw in lines:
        hit = _UNSUPPORTED.search(_ANSI.sub("", raw))
        if hit:
            found += [f"{t} ({n})" for n, t in _UNSUPPORTED_NODE.findall(hit.group(1))]
    return list(dict.fromkeys(found))


def backend_version() -> str:
    """The onnxruntime version."""
    return ort.__version__


class Session:
    """An onnxruntime session made by :func:`open_session`, and where its nodes run."""

    def __init__(self, inner: ort.InferenceSession, placement: Placement, chatty: bool = False) -> None:
        self._inner = inner
        self.placement = placement
        self._run_options = ort.RunOptions()
        self._run_options.log_severity_level = 4  # a failed run raises; we report it in one line
        # a plugin provider logs each run through the session's (verbose) logger, which run options
        # do not quieten: its lines are captured and relayed at DEBUG
        self._chatty = chatty

    def run(self, outputs: Optional[Sequence[str]], feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Run the graph: ``outputs`` by name (None = all) from the ``feed`` inputs."""
        names = None if outputs is None else list(outputs)
        if not self._chatty:
            return self._inner.run(names, feed, self._run_options)
        with _stderr_captured(stdout=True) as lines:
            result = self._inner.run(names, feed, self._run_options)
        relay_log(lines, self.placement.graph, demote=True)
        return result

    def get_inputs(self):
        """The graph's inputs (onnxruntime's ``NodeArg`` list: name, type, shape)."""
        return self._inner.get_inputs()

    def get_outputs(self):
        """The graph's outputs (onnxruntime's ``NodeArg`` list)."""
        return self._inner.get_outputs()

    def get_providers(self) -> list[str]:
        """The execution providers onnxruntime registered for this session, in priority order."""
        return self._inner.get_providers()

    def close(self) -> None:
        """Free the session (weights, prepacked copies, its arena) and hand the heap back;
        the session cannot run afterwards."""
        self._inner = None
        release_heap()


def release_heap() -> None:
    """Return the free heap glibc still maps to the OS (``malloc_trim(0)``); nothing elsewhere."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            import ctypes

            ctypes.CDLL("libc.so.6").malloc_trim(0)


def open_session(path: Path, options: OnnxOptions = OnnxOptions()) -> Session:
    """An inference session with explicit threads and providers (with their provider options).

    With ``options.device`` set, the providers come from :func:`edge.runtime.devices.onnx_choice`
    (the graph's dtype read from the bundle's manifest next to it); an ``auto`` NPU choice the
    NPU refuses whole is opened on the CPU instead, the reason in the placement. A bundle made
    by ``edge compile`` holds an EPContext model of the graph for its NPU: it is opened instead
    of the graph when the provider matches (see :func:`compiled_contexts`).

    Raises:
        InputError: a provider (or device) that is not here (the message says what to install),
            or, with ``fallback="error"``, a graph the first provider cannot run whole (the
            message names the first unsupported operators).
        BundleError: with ``fallback="error"``, a compiled context made for another SoC.
        RuntimeFailure: onnxruntime cannot load the graph (its first line says why).
    """
    path = Path(path)
    if options.device is None:
        providers, strict = options.providers, options.fallback == "error"
        return _open(path, options, providers, strict, options.device or "", "")
    hardware = ep_devices() if options.device in ("npu", "auto") else []  # registering plugins costs a load
    choice = onnx_choice(options.device, graph_dtype(path), available_providers(), hardware, options.fallback)
    providers = tuple(_with_defaults(Provider(n)) for n in choice.providers)
    try:
        return _open(path, options, providers, choice.strict, choice.device, choice.reason)
    except InputError as exc:
        if choice.otherwise is None:
            raise
        LOG.warning("%s: %s; running on the CPU", path.name, exc)
        other = choice.otherwise
        return _open(path, options, (CPU,), other.strict, other.device, f"{other.reason}: {exc}")


def _open(path: Path, options: OnnxOptions, providers: Sequence[Provider], strict: bool, device: str, why: str):
    so = ort.SessionOptions()
    so.log_severity_level = 0  # node placement is only logged at the verbose level; every line goes to LOG
    # 0 = edge's rule: every physical core, as onnxruntime's own default, but without spinning (docs/threads.md)
    so.intra_op_num_threads = options.threads or onnx_threads()
    so.inter_op_num_threads = 1
    spin = "1" if options.spinning else "0"
    so.add_session_config_entry("session.intra_op.allow_spinning", spin)
    so.add_session_config_entry("session.inter_op.allow_spinning", spin)
    names = tuple(p.name for p in providers)
    plugin = [p for p in providers if p.name in PLUGINS]
    _check_present(names)
    if strict and names[0] != CPU.name:
        so.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
    graph, context = path, ""
    if plugin:
        if names[0] != plugin[0].name or any(n not in (plugin[0].name, CPU.name) for n in names):
            raise InputError(f"{plugin[0].name} (a plugin execution provider) can only be followed by the CPU")
        first = _with_defaults(plugin[0])
        graph, context = _context_or_graph(path, first, strict)
        so.add_provider_for_devices(_plugin_devices(first.name), dict(first.options))
    session, failure = None, None
    with _stderr_captured(stdout=bool(plugin)) as lines:
        try:
            if plugin:
                session = ort.InferenceSession(str(graph), sess_options=so)
            else:
                session = ort.InferenceSession(
                    str(graph),
                    sess_options=so,
                    providers=list(names),
                    provider_options=[dict(p.options) for p in providers],
                )
        except Exception as exc:  # onnxruntime raises its own exception types
            failure = exc
    ops = placed_ops(lines)
    unsupported = unsupported_ops(lines) or [op for p, found in ops if p != names[0] for op in found]
    refused = session is None and strict and (unsupported or "explicitly disabled" in str(failure))
    placed = relay_log(lines, path.name, demote=bool(refused))
    if session is None:
        if refused:
            raise InputError(_refusal(path.name, names[0], unsupported)) from None
        text = str(failure).strip()
        first = text.splitlines()[0] if text else type(failure).__name__
        raise RuntimeFailure(f"onnxruntime cannot load {path.name}: {first}") from None
    # a plugin provider is not in the session's list; onnxruntime adds the CPU provider behind it
    registered = tuple(session.get_providers())
    if plugin and plugin[0].name not in registered:
        registered = (plugin[0].name, *registered)
    placement = GraphPlacement(path.name, names, registered, placed, device, why, ops, context)
    if strict and placement.fallback:
        raise InputError(_refusal(path.name, names[0], [op for p, found in ops if p != names[0] for op in found]))
    report_placement(placement)
    release_heap()  # the parsed graph and any f16 weights folded to f32 are free now
    return Session(session, placement, chatty=bool(plugin))


def _refusal(graph: str, provider: str, ops: Sequence[str]) -> str:
    first = list(dict.fromkeys(ops))[:5]
    what = f": unsupported operators {', '.join(first)}" if first else ""
    return f"{graph} cannot run whole on {provider} (--fallback error){what}"


def report_placement(placement: Placement) -> None:
    """Log where a graph runs: a WARNING for each fallback, else one INFO line."""
    for reason in placement.reasons:
        LOG.warning("%s: execution provider fallback: %s", placement.graph, reason)
    if not placement.fallback:
        where = ", ".join(f"{n} nodes on {p}" for p, n in placement.nodes) or "node placement not reported"
        LOG.info("%s: %s", placement.graph, where)


def relay_log(lines: Sequence[str], graph: str, demote: bool = False) -> tuple[tuple[str, int], ...]:
    """Re-issue onnxruntime's log ``lines`` on :data:`LOG`, each at its level, prefixed with
    ``graph``; return the node placement they report (provider, node count), if any.

    A line without onnxruntime's prefix continues the previous message; before any message
    it is not onnxruntime's and goes back to stderr (but the QNN libraries' own start-up line,
    and onnxruntime-qnn's warnings about features of other platforms, are INFO/DEBUG).
    ``demote``: everything at DEBUG (a refusal already says in one line what the log says).
    """
    placed: list[tuple[str, int]] = []
    records: list[list] = []  # [level, source, text]
    for raw in lines:
        line = _ANSI.sub("", raw).rstrip()
        match = _LINE.match(line)
        if match:
            records.append([_LEVELS[match.group(1)], match.group(2), match.group(3)])
            hit = _PLACED.search(match.group(3))
            if hit:
                placed.append((hit.group(1), int(hit.group(2))))
        elif records:
            if line:
                records[-1][2] += "\n" + line
        elif _QNN_CHATTER.search(line):
            LOG.debug("%s: %s", graph, line.strip())
        elif line:
            sys.stderr.write(raw + "\n")
    for level, source, text in records:
        if demote:
            level = logging.DEBUG
        elif level == logging.WARNING and _BENIGN.search(text):
            level = logging.INFO
        LOG.log(level, "%s: %s", graph, text, extra={"onnxruntime_source": source})
    return tuple(placed)


@contextlib.contextmanager
def _stderr_captured(stdout: bool = False) -> Iterator[list[str]]:
    """Point fd 2 (and fd 1 with ``stdout``: the QNN libraries print to stdout, which would
    corrupt ``--json``) at a temporary file for the ``with`` body; the list it yields gets the
    lines written meanwhile once the body ends. Without a usable fd nothing is captured."""
    lines: list[str] = []
    fds = (2, 1) if stdout else (2,)
    with _FD2_LOCK, tempfile.TemporaryFile() as tmp:
        with contextlib.suppress(Exception):
            sys.stderr.flush()
            sys.stdout.flush()
        try:
            saved = [os.dup(fd) for fd in fds]
        except OSError:
            saved = None
        if saved is None:
            yield lines
            return
        for fd in fds:
            os.dup2(tmp.fileno(), fd)
        try:
            yield lines
        finally:
            with contextlib.suppress(Exception):
                sys.stderr.flush()
                sys.stdout.flush()
            for fd, old in zip(fds, saved):
                os.dup2(old, fd)
                os.close(old)
            tmp.seek(0)
            lines.extend(tmp.read().decode("utf-8", errors="replace").splitlines())
