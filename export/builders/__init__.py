"""Random-weight models of real architectures, built offline into HF checkpoint folders.

``tiny``: tiny models for parity tests (built in seconds); ``full_size``: full-size shapes
with random vision weights and the real SmolLM2-135M text model, for benchmarks (speed
does not depend on the weight values). Tests, benchmarks and ``edge bench`` all build
their models here. Needs the ``export`` extra (torch, transformers).
"""
