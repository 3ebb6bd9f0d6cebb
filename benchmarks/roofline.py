"""Machine and model figures the ratios are read against: memory bandwidth, the bytes a
decoded token reads, and the FLOPs of one vision tile.

Decode roofline: a decode step of a small dense LLM on a CPU is bound by memory, since
every weight is read once per token (plus the KV cache so far). The best possible rate
is ``bandwidth / bytes_per_token``.

- Bandwidth: a STREAM-style *copy* (``a[:] = b``) on arrays far larger than the caches,
  one array pair per thread, run concurrently on ``threads`` threads (numpy releases the
  GIL while copying). Bytes moved = read + written, as STREAM counts; best of ``rounds``.
- Bytes per token: every tensor of the GGUF as stored, except that the token embedding
  is counted only when it is also the output matrix (tied embeddings, SmolLM2); an
  untied embedding is read one row per token. Plus the KV cache read at ``depth``:
  ``2 (K and V) * n_layer * n_head_kv * head_dim * depth * kv_bytes``. An
  approximation: activations and the logits row are left out.

Vision FLOPs per tile (multiply-adds count 2), for a ViT tower of hidden H, MLP width I,
``L`` layers used, patch P, tile S, N = (S/P)^2 patches (+1 class token for CLIP):
``patch embed 2*N*3*P*P*H + L * (2*N*(4*H*H + 2*H*I) + 4*N*N*H)`` (the four attention
projections, the MLP, then QK^T and AV) plus the connector: Idefics3's pixel shuffle
is free and its projection is ``2*(N/s^2)*(H*s^2)*D``; LLaVA's MLP projector is
``2*N'*(H*D + D*D)`` (N' = N without the class token). Layers past
``vision_feature_layer`` are not counted (llama.cpp and our export do not run them).
Norms, softmax, GELU and the biases are left out (under 1 % here).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Optional

import numpy as np


def memory_bandwidth(threads: int, mib: int = 256, rounds: int = 5) -> float:
    """Bytes per second a STREAM copy reaches on ``threads`` threads (best of ``rounds``)."""
    n = mib * (1 << 20) // 8
    pairs = [(np.ones(n), np.empty(n)) for _ in range(max(1, threads))]
    for src, dst in pairs:
        np.copyto(dst, src)  # touch the pages first
    best = 0.0
    for _ in range(rounds):
        barrier = threading.Barrier(len(pairs) + 1)

        def copy(src, dst):
            barrier.wait()
            np.copyto(dst, src)

        workers = [threading.Thread(target=copy, args=p) for p in pairs]
        for w in workers:
            w.start()
        barrier.wait()
        t0 = time.perf_counter()
        for w in workers:
            w.join()
        seconds = time.perf_counter() - t0
        best = max(best, 2 * n * 8 * len(pairs) / seconds)
    return best


def gguf_facts(path: Path) -> dict:
    """Weight bytes and KV-cache shape of a llama-architecture GGUF."""
    import gguf

    reader = gguf.GGUFReader(str(path))
    arch = str(reader.fields["general.architecture"].contents())

    def field(key: str, default=None):
        f = reader.fields.get(f"{arch}.{key}")
        return f.contents() if f is not None else default

    sizes = {t.name: int(t.n_bytes) for t in reader.tensors}
    n_head = int(field("attention.head_count"))
    n_embd = int(field("embedding_length"))
    return {
        "weights_bytes": sum(sizes.values()),
        "token_embd_bytes": sizes.get("token_embd.weight", 0),
        "tied_output": "output.weight" not in sizes,
        "n_layer": int(field("block_count")),
        "n_head_kv": int(field("attention.head_count_kv", n_head)),
        "head_dim": int(field("attention.key_length", n_embd // n_head)),
    }


def bytes_per_token(facts: dict, depth: int, kv_bytes: int = 2) -> int:
    """Bytes one decode step reads at context ``depth`` (see the module docstring)."""
    weights = facts["weights_bytes"] - (0 if facts["tied_output"] else facts["token_embd_bytes"])
    kv = 2 * facts["n_layer"] * facts["n_head_kv"] * facts["head_dim"] * depth * kv_bytes
    return int(weights + kv)


def vision_flops_per_tile(config: dict) -> Optional[float]:
    """FLOPs of one tile through the vision tower and projector, from a HF ``config.json``
    (Idefics3/SmolVLM and LLaVA layouts); None for other layouts."""
    vc = config.get("vision_config") or {}
    text = config.get("text_config") or {}
    try:
        h, i, layers = vc["hidden_size"], vc["intermediate_size"], vc["num_hidden_layers"]
        p, s, d = vc["patch_size"], vc["image_size"], text["hidden_size"]
    except KeyError:
        return None
    n = (s // p) ** 2
    model_type = config.get("model_type")
    if model_type == "llava":
        feature = config.get("vision_feature_layer", -2)
        used = layers + 1 + feature if feature < 0 else feature  # hidden_states[k] is after k layers
        n_out = n if config.get("vision_feature_select_strategy", "default") == "default" else n + 1
        n += 1  # CLIP's class token
        connector = 2 * n_out * (h * d + d * d)
    elif model_type in ("idefics3", "smolvlm"):
        used = layers
        scale = config.get("scale_factor", 2)
        connector = 2 * (n // scale**2) * (h * scale**2) * d
    else:
        return None
    patch = 2 * n * 3 * p * p * h
    per_layer = 2 * n * (4 * h * h + 2 * h * i) + 4 * n * n * h
    return float(patch + used * per_layer + connector)
