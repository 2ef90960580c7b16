"""Constrained decoding: a JSON schema enforced token by token with xgrammar.

xgrammar is the structured-output engine of vLLM, SGLang and TensorRT-LLM, so the JSON schema
that constrains the local transformers writer here is the same one a remote OpenAI-compatible
server enforces (`response_format={"type": "json_schema", ...}` / `guided_json`). It ships a
CPU wheel, compiles a schema in milliseconds and masks a 49k vocabulary in well under a
millisecond per token.
"""

from __future__ import annotations

import functools
from typing import Any

import torch
import xgrammar

_CACHE_SIZE = 32


@functools.lru_cache(maxsize=8)
def _compiler(tokenizer: Any, vocab_size: int) -> Any:
    """One grammar compiler per tokenizer (it caches compiled grammars itself)."""
    info = xgrammar.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size)
    return xgrammar.GrammarCompiler(info, cache_enabled=True)


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _compiled(tokenizer: Any, vocab_size: int, schema: str) -> Any:
    return _compiler(tokenizer, vocab_size).compile_json_schema(schema, any_whitespace=False)


class JsonSchemaConstraint:
    """The state of one constrained reply: which tokens may come next, and when it is done.

    `mask(logits)` sets the logits of forbidden tokens to -inf (in place, [1, vocab]);
    `accept(token_id)` advances the matcher; `done` is True once the JSON value is complete
    and the end-of-sequence token was accepted (or no further token is allowed).
    """

    def __init__(self, tokenizer: Any, vocab_size: int, schema: str) -> None:
        grammar = _compiled(tokenizer, vocab_size, schema)
        self.matcher = xgrammar.GrammarMatcher(grammar)
        self.bitmask = xgrammar.allocate_token_bitmask(1, vocab_size)

    def mask(self, logits: torch.Tensor) -> torch.Tensor:
        """Forbid every token the schema does not allow next (in place); returns `logits`."""
        self.matcher.fill_next_token_bitmask(self.bitmask)
        xgrammar.apply_token_bitmask_inplace(logits, self.bitmask.to(logits.device))
        return logits

    def accept(self, token_id: int) -> None:
        """Advance past a chosen token; a token the mask forbade is a bug, not bad input."""
        accepted = self.matcher.accept_token(token_id)
        assert accepted, f"token {token_id} was outside the schema's mask"

    @property
    def done(self) -> bool:
        return bool(self.matcher.is_terminated())
