"""Token ids to streamed text: incremental decoding, stop strings, and batched drafts.

`TextAssembler` turns token ids into text pieces: it decodes incrementally (only the new,
stable suffix, so multi-byte characters split over tokens are never yielded half-done) and
holds back text that may be the start of a stop string. Torch-free, so that every local
backend (transformers in models/lm.py, llama.cpp in models/llamacpp.py) shares it: a
"tokenizer" here is anything with `decode(ids, skip_special_tokens=..., ...)`.
"""

from __future__ import annotations

import threading
from typing import Any, Iterable, Iterator

# Prompt tokens decoded with the reply so that a leading space or joined character of the
# first reply token decodes as it would mid-text (after vLLM's detokenizer).
CONTEXT_TOKENS = 5
REPLACEMENT_CHAR = "\ufffd"


def stream_text(tokenizer: Any, context_ids: list[int], stops: Iterable[str],
                token_ids: Iterable[int], cancel: threading.Event | None = None
                ) -> Iterator[str]:
    """Text pieces of streamed token ids, cut at the first stop string; the tail is flushed
    unless the work was cancelled (what was shown stays what was written)."""
    assembler = TextAssembler(tokenizer, context_ids, stops)
    for token_id in token_ids:
        piece = assembler.push(token_id)
        if piece:
            yield piece
        if assembler.stopped:
            return
    if cancel is None or not cancel.is_set():
        tail = assembler.flush()
        if tail:
            yield tail


def longest_stop_overlap(text: str, stops: Iterable[str]) -> int:
    """Length of the longest end of `text` that is the start of some stop string."""
    best = 0
    for stop in stops:
        for size in range(min(len(stop) - 1, len(text)), best, -1):
            if text.endswith(stop[:size]):
                best = size
                break
    return best


class TextAssembler:
    """Builds streamed text from token ids: incremental decoding plus stop strings.

    `push(token_id)` returns the text now safe to show ("" while a character or a possible
    stop string is incomplete); `stopped` turns True when a stop string appeared (the text
    before it is returned, the stop string itself never). `flush()` returns what was held
    back, at the end of the reply.
    """

    def __init__(self, tokenizer: Any, context_ids: list[int], stops: Iterable[str] = ()):
        self.tokenizer = tokenizer
        self.ids = list(context_ids[-CONTEXT_TOKENS:])
        self.prefix_offset = 0
        self.read_offset = len(self.ids)
        self.stops = tuple(stop for stop in stops if stop)
        self.pending = ""  # decoded but not yet returned (a stop string may be starting)
        self.stopped = False

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True,
                                     clean_up_tokenization_spaces=False)

    def _new_text(self, token_id: int) -> str:
        """The text added by this token, once it decodes to whole characters."""
        self.ids.append(token_id)
        before = self._decode(self.ids[self.prefix_offset:self.read_offset])
        after = self._decode(self.ids[self.prefix_offset:])
        if len(after) <= len(before) or after.endswith(REPLACEMENT_CHAR):
            return ""
        self.prefix_offset = self.read_offset
        self.read_offset = len(self.ids)
        return after[len(before):]

    def push(self, token_id: int) -> str:
        """Add one token; return the text that is now final (may be empty)."""
        if self.stopped:
            return ""
        self.pending += self._new_text(token_id)
        if not self.stops:
            text, self.pending = self.pending, ""
            return text
        cuts = [self.pending.find(stop) for stop in self.stops if stop in self.pending]
        if cuts:
            self.stopped = True
            text, self.pending = self.pending[:min(cuts)], ""
            return text
        keep = longest_stop_overlap(self.pending, self.stops)
        text = self.pending[:len(self.pending) - keep]
        self.pending = self.pending[len(self.pending) - keep:]
        return text

    def flush(self) -> str:
        """What is still held back when the reply ends (not a stop string: none appeared).

        Tokens that never decoded to whole characters are included as they decode now.
        """
        if self.stopped:
            return ""
        before = self._decode(self.ids[self.prefix_offset:self.read_offset])
        after = self._decode(self.ids[self.prefix_offset:])
        text = cut_at_stop(self.pending + after[len(before):], self.stops)
        self.pending = ""
        self.stopped = True
        return text


def cut_at_stop(text: str, stops: Iterable[str]) -> str:
    """`text` up to the first occurrence of any stop string (all of it when none occurs)."""
    cuts = [text.find(stop) for stop in stops if stop and stop in text]
    return text[:min(cuts)] if cuts else text


def decode_reply(tokenizer: Any, context_ids: list[int], reply_ids: list[int],
                 stops: Iterable[str] = ()) -> str:
    """The text of a whole reply, decoded as streaming would and cut at the first stop."""
    assembler = TextAssembler(tokenizer, context_ids, stops)
    pieces = [assembler.push(token_id) for token_id in reply_ids]
    pieces.append(assembler.flush())
    return "".join(pieces)


def stream_candidate_text(decoder: Any, tokenizer: Any, context_ids: list[int],
                          stops: Iterable[str], cancel: threading.Event | None = None
                          ) -> Iterator[list[str]]:
    """Text pieces of a BatchDecoder's rows, one list per step ("" for a row with no new
    text); a row that writes a stop string ends there (the decoder drops it). The rows'
    held-back tails come last, unless the work was cancelled."""
    assemblers = [TextAssembler(tokenizer, context_ids, stops) for _ in range(decoder.count)]
    for step in decoder:
        pieces = []
        for row, token_id in enumerate(step):
            piece = assemblers[row].push(token_id) if token_id is not None else ""
            if assemblers[row].stopped:
                decoder.finish(row)
            pieces.append(piece)
        if any(pieces):
            yield pieces
    if cancel is None or not cancel.is_set():
        tails = [assembler.flush() for assembler in assemblers]
        if any(tails):
            yield tails
