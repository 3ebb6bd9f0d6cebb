"""How thorough the fidelity measurement is: quick by default, full on request (the CLI's
``--fidelity``); the full mode's own figures are checked in test_quantize.py's CLI test."""

from __future__ import annotations

import pytest

from edge.errors import InputError
from edge.options import PROBE_BUDGET, QuantizeOptions
from edge.quantize.api import quantize_bundle

THREADS = 1


def test_quick_fidelity_is_the_default_and_says_so(tiny_llava_bundle, tmp_path, photo):
    """The default measurement: the first generated images and the user's, every image (in the
    answers too) under the probe budget; the report and its summary say which ran."""
    from edge.options import QUICK_PROBE_IMAGES
    from edge.quantize.api import summary_lines

    m = quantize_bundle(tiny_llava_bundle, tmp_path / "q8", "q8", QuantizeOptions(threads=THREADS, images=(photo,)))
    report = m.provenance["fidelity"]
    assert report["probes"]["fidelity"] == "quick"
    assert report["probes"]["generated_images"] == QUICK_PROBE_IMAGES and report["probes"]["user_images"] == 1
    assert report["vision"]["images"] == QUICK_PROBE_IMAGES + 1
    assert report["vision"]["budget"]["max_tiles"] == PROBE_BUDGET.max_tiles
    assert report["end_to_end"]["prompts"] == 8 and report["end_to_end"]["with_images"]
    assert any(line.startswith("measured: quick") for line in summary_lines(report))
    with pytest.raises(InputError, match="fidelity must be quick or full"):
        QuantizeOptions(fidelity="slow")
