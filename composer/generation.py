"""Small helpers around a LanguageModel: collect a whole reply, and time where the work goes."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from contextlib import contextmanager
from typing import Any, Iterator

from composer.prompts import Prompt
from composer.types import ChatMessage, GenerationConfig
from models.lm import LanguageModel


def stream(lm: LanguageModel, prompt: Prompt, config: GenerationConfig,
           cancel: threading.Event | None = None) -> Iterator[str]:
    """Stream the reply to a Prompt (messages plus pre-filled prefix)."""
    return lm.stream(prompt.messages, config, prefix=prompt.prefix, cancel=cancel)


def collect(lm: LanguageModel, prompt: Prompt, config: GenerationConfig,
            cancel: threading.Event | None = None) -> str:
    """The whole reply to a Prompt as one string (for short answers: titles, tags, letters)."""
    return "".join(stream(lm, prompt, config, cancel))


class StageTimer:
    """Accumulates wall-clock seconds per named category (generation, retrieval, storage)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.pieces = 0  # streamed pieces (about one per token)

    @contextmanager
    def measure(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - start

    def as_dict(self) -> dict[str, float]:
        return {name: round(value, 4) for name, value in self.seconds.items()}


class TimedLanguageModel:
    """Wraps a LanguageModel and charges the time spent inside it to `timer["generation"]`.

    Only the time spent producing each piece counts, not the time the consumer spends
    between pieces (printing, saving), so the split between stages is honest. It holds no
    per-request state: reference images travel in the messages (ChatMessage.images).
    """

    def __init__(self, lm: LanguageModel, timer: StageTimer):
        self.lm = lm
        self.timer = timer
        self.name = lm.name
        self.context_length = lm.context_length
        self.sees_images = lm.sees_images  # it reads each message's images (ChatMessage)
        self.supports_beams = bool(getattr(lm, "supports_beams", True))
        self.supports_opera = bool(getattr(lm, "supports_opera", False))
        # Drafts decoded together (composer/checked.py), offered when the backend batches
        # them; a writer that sees images draws its drafts one at a time with the images.
        if callable(getattr(lm, "stream_candidates", None)) and not self.sees_images:
            self.stream_candidates = self._stream_candidates

    @property
    def supports_json_schema(self) -> bool:
        """Asked of the backend each time: a model server turns it off when it refuses it."""
        return bool(getattr(self.lm, "supports_json_schema", False))

    def stream(self, messages: list[ChatMessage], config: GenerationConfig, *,
               prefix: str = "", cancel: threading.Event | None = None) -> Iterator[str]:
        yield from self._timed(self.lm.stream(messages, config, prefix=prefix, cancel=cancel))

    def _stream_candidates(self, messages: list[ChatMessage], config: GenerationConfig,
                           count: int, *, prefix: str = "",
                           cancel: threading.Event | None = None) -> Iterator[list[str]]:
        yield from self._timed(self.lm.stream_candidates(messages, config, count,
                                                         prefix=prefix, cancel=cancel))

    def _timed(self, steps: Any) -> Iterator[Any]:
        """The items of a model's stream, the time spent producing each charged to the
        timer (not the time the consumer spends between items)."""
        steps = iter(steps)
        while True:
            with self.timer.measure("generation"):
                item = next(steps, None)
            if item is None:
                return
            self.timer.pieces += 1
            yield item

    def count_tokens(self, text: str) -> int:
        return self.lm.count_tokens(text)
