"""Built-in architecture families; importing this package registers them."""
from edge.export.families import idefics3, llama, llava, llava_next, whisper  # noqa: F401
