"""edge: export multimodal LLMs into bundles and run them offline on your own device.

The public Python API::

    import edge
    pipe = edge.load("path/to/bundle")
    print(pipe.generate("Describe this.", images=["photo.jpg"]).text)
"""
from __future__ import annotations

__version__ = "0.1.0"

from edge.errors import BundleError, EdgeError, ExportError, ImageError, InputError  # noqa: E402


def load(bundle, **options):
    """Open a bundle and return a :class:`edge.runtime.pipeline.Pipeline`.

    Keyword options are those of :class:`edge.runtime.pipeline.RuntimeOptions`
    (``threads``, ``n_ctx``, ``verbose``).
    """
    # Imported here: the contract does not import the runtime at module level.
    from edge.runtime.pipeline import Pipeline, RuntimeOptions

    return Pipeline(bundle, RuntimeOptions(**options))


__all__ = ["load", "EdgeError", "InputError", "ImageError", "BundleError", "ExportError", "__version__"]
