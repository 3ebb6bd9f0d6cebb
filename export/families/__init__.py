"""Built-in architecture families; importing this package registers them."""
from edge.export.families import llama, llava  # noqa: F401
