"""Language-model backends: the protocol every backend follows, and the local transformers one.

A backend turns chat messages into streamed text under a GenerationConfig.
"""

from __future__ import annotations

import threading
from typing import Iterator, Protocol, runtime_checkable

from composer.types import ChatMessage, GenerationConfig


@runtime_checkable
class LanguageModel(Protocol):
    """What the composer needs from a language model.

    name: a short label for logs and stored options.
    context_length: how many tokens fit in the prompt plus the reply.
    stream(): yields pieces of the reply as they are decoded. `prefix` pre-fills the start of
      the assistant's reply (the model continues it; the prefix itself is not yielded).
      Stops at EOS, at any of config.stop (not yielded), after config.max_new_tokens, or when
      `cancel` is set.
    count_tokens(): tokens of a text under this model's tokenizer.
    """

    name: str
    context_length: int

    def stream(
        self,
        messages: list[ChatMessage],
        config: GenerationConfig,
        *,
        prefix: str = "",
        cancel: threading.Event | None = None,
    ) -> Iterator[str]: ...

    def count_tokens(self, text: str) -> int: ...
