"""Every registered architecture family must have a tiny-model test."""
from edge.export.registry import families

from edge.export.builders import tiny


def test_every_family_has_a_tiny_model_builder():
    missing = set(families()) - set(tiny.TINY_BUILDERS)
    assert not missing, f"families without a tiny-model test: {sorted(missing)}"
