"""A multi-turn conversation over a pipeline: the history is re-rendered each turn and the
pipeline's KV prefix reuse makes each turn pay only for what is new."""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterator, Optional, Sequence

from edge.events import Event, FinishEvent
from edge.options import GenerateOptions
from edge.runtime.text.prompt import Message

if TYPE_CHECKING:
    from edge.runtime.pipeline import Pipeline


class ChatSession:
    """A conversation: each :meth:`send` renders the whole history, the cache reuses the prefix."""

    def __init__(self, pipeline: "Pipeline", system: Optional[str] = None) -> None:
        self.pipeline = pipeline
        self.system = system
        self.messages: list[Message] = []

    def send(
        self,
        text: str,
        images: Sequence = (),
        options: GenerateOptions = GenerateOptions(),
        audio: Sequence = (),
        videos: Sequence = (),
    ) -> Iterator[Event]:
        """Add a user turn and stream the assistant's answer, recorded when it finishes; ``audio``
        is transcribed into the turn. An answer whose stream is closed early (Ctrl-C) is recorded
        as far as it went, and the KV cache keeps what was evaluated for the next turn to reuse.
        ``videos`` go into the turn as :meth:`Pipeline.stream` takes them."""
        text = self.pipeline.hear(text, audio)
        msgs = (
            ([Message("system", self.system)] if self.system else [])
            + self.messages
            + [Message("user", text, tuple(images), tuple(videos))]
        )
        stream = self.pipeline.stream_messages(msgs, options)  # validates before anything is recorded
        self.messages.append(Message("user", text, tuple(images), tuple(videos)))
        shown: list[str] = []
        finished = False
        try:
            for ev in stream:
                if isinstance(ev, FinishEvent):
                    self.messages.append(Message("assistant", ev.text))
                    finished = True
                else:
                    shown.append(ev.text)
                yield ev
        except GeneratorExit:
            stream.close()
            if not finished:
                self.messages.append(Message("assistant", "".join(shown)))
            raise

    def reset(self) -> None:
        """Forget the conversation (the cache is reused as far as the system prompt goes)."""
        self.messages = []
