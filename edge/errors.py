"""Typed errors. Every failure a user can cause is one of these, with a one-line message.

The CLI turns an :class:`EdgeError` into ``error: <message>`` on stderr and the
error's ``exit_code``; the Python API lets it propagate.
"""

from __future__ import annotations


class EdgeError(Exception):
    """Base of every error edge raises on purpose."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        # Keep the message on one line: it is printed as is by the CLI.
        super().__init__(" ".join(str(message).split()))


class InputError(EdgeError):
    """Bad user input: an option out of range, an unreadable image, a wrong prompt."""

    exit_code = 2


class ImageError(InputError):
    """An image file that is missing, empty, not an image, truncated or too large."""


class AudioError(InputError):
    """An audio file or array that is missing, empty, not audio, corrupt or of a bad sample rate."""


class BundleError(EdgeError):
    """A bundle that is missing, incomplete, corrupt or of an unknown schema."""

    exit_code = 3


class ExportError(EdgeError):
    """A source checkpoint that cannot be exported, or an export that failed parity."""

    exit_code = 4


class ContextOverflowError(InputError):
    """The prompt (text plus image tokens) does not fit the LLM's context window."""


class RuntimeFailure(EdgeError):
    """A backend (onnxruntime, llama.cpp) failed while running a valid bundle."""

    exit_code = 5


class DeviceError(EdgeError):
    """A capture device (microphone, camera) that cannot be opened: package, library or device missing."""

    exit_code = 5
