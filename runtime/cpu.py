"""How many CPU threads a component gets when its options say 0 (auto): edge's rules, measured in
``docs/threads.md``.

llama.cpp's compute threads meet at a barrier after every node of the graph and spin there
(OpenMP builds: libgomp's barrier; others: ggml's); when another process takes one of their cores,
the others wait for it and decoding collapses (on 2 cores beside one busy process: 115 -> 25
tokens/s with 2 threads, 92 -> 88 with 1). Leaving one core to the rest of the machine keeps
them running: one thread per physical core, less one, at least one (:func:`llm_threads`).
onnxruntime's threads block instead of spinning when told to (``OnnxOptions.spinning`` False), and
then every physical core pays off alone and costs little under load (:func:`onnx_threads`).
"""

from __future__ import annotations

import os
from pathlib import Path


def available_cpus() -> int:
    """The logical CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def physical_cores() -> int:
    """Physical cores among the available CPUs (SMT siblings counted once), from Linux's CPU
    topology; elsewhere, or when it cannot be read, the available logical CPUs."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return available_cpus()
    cores = set()
    for cpu in cpus:
        topology = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            package = (topology / "physical_package_id").read_text().strip()
            core = (topology / "core_id").read_text().strip()
        except OSError:
            return available_cpus()
        cores.add((package, core))
    return max(1, len(cores))


def llm_threads() -> int:
    """llama.cpp's threads for ``threads=0``: the physical cores less one, at least one."""
    return max(1, physical_cores() - 1)


def onnx_threads() -> int:
    """onnxruntime's intra-op threads for ``threads=0``: one per physical core."""
    return physical_cores()
