"""The benchmark harness behind ``edge bench`` and ``python -m edge.benchmarks``.

Measures a bundle on edge next to transformers eager (fp32, CPU) and llama.cpp's own
multimodal path (libmtmd), in one run, on identical inputs, alternating the sides
request by request and reporting medians. See ``docs/benchmarks.md``.

Modules: :mod:`runner` (the phases B1-B5), :mod:`procs` (worker processes, the
alternating schedule), :mod:`worker` (one side per process), :mod:`ours`,
:mod:`peers`, :mod:`peer_llamacpp` (the sides), :mod:`convert` (llama.cpp's converters),
:mod:`models` (the benchmark checkpoints), :mod:`roofline`, :mod:`report`, :mod:`suite`.
Not a test: CI runs ``tests/test_bench_smoke.py`` only.
"""
