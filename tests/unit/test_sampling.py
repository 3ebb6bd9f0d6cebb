"""Sampling: greedy, seeded reproducibility, top-k/top-p truncation, option checks."""

import numpy as np
import pytest

from edge.errors import InputError
from edge.options import SamplingOptions
from edge.runtime.text.sampling import Sampler


def _logits(seed=0, n=1000):
    return np.random.default_rng(seed).standard_normal(n).astype(np.float32) * 3


def test_greedy_is_argmax():
    lg = _logits()
    assert Sampler(SamplingOptions())(lg) == int(np.argmax(lg))


def test_seed_reproduces_and_differs():
    opts = SamplingOptions(temperature=1.0, top_k=0, top_p=1.0, seed=5)

    def draws(o):
        sampler = Sampler(o)
        return [sampler(_logits(i)) for i in range(50)]

    a, b = draws(opts), draws(opts)
    c = draws(SamplingOptions(temperature=1.0, top_k=0, top_p=1.0, seed=6))
    assert a == b
    assert a != c


def test_top_k_keeps_only_k_tokens():
    lg = _logits()
    allowed = set(np.argsort(-lg)[:3].tolist())
    s = Sampler(SamplingOptions(temperature=5.0, top_k=3, top_p=1.0, seed=1))
    assert {s(lg) for _ in range(300)} <= allowed


def test_top_p_keeps_the_nucleus():
    lg = np.array([10.0, 9.0, 0.0, -1.0, -2.0], np.float32)
    s = Sampler(SamplingOptions(temperature=1.0, top_k=0, top_p=0.9, seed=3))
    assert {s(lg) for _ in range(300)} == {0, 1}


@pytest.mark.parametrize(
    "kw",
    [
        dict(temperature=-1),
        dict(temperature=float("nan")),
        dict(top_p=0.0),
        dict(top_p=1.5),
        dict(top_k=-1),
        dict(seed=-3),
    ],
)
def test_bad_options(kw):
    with pytest.raises(InputError):
        SamplingOptions(**kw)
