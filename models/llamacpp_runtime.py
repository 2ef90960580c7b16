"""llama.cpp's C API (llama-cpp-python) in the pieces the writer is built from.

`llama_api()` imports it once and keeps llama.cpp's log lines quiet; `LlamaVocab` is the
model's tokenizer with the encode/decode of a transformers tokenizer; `LlamaContext` a KV
cache with a batch to fill; `LlamaSampler` the sampler chain of one reply (repetition
penalty, n-gram bans, greedy or seeded sampling, a grammar); `requantize` writes a GGUF in
another quantization. models/llamacpp.py assembles them into the LanguageModel.
"""

from __future__ import annotations

import ctypes
import importlib.util
import logging
import os
import threading
from pathlib import Path
from typing import Any

from composer.config import MAX_CANDIDATES
from composer.types import ComposerError, GenerationConfig

LLAMA_PIP = "llama-cpp-python==0.3.36"
PREFILL_CHUNK = 512  # prompt tokens per llama_decode call


def llama_cpp_installed() -> bool:
    """Whether llama-cpp-python can be imported (scripts/setup.sh builds it)."""
    try:
        return importlib.util.find_spec("llama_cpp") is not None
    except ValueError:
        return False


def default_threads() -> int:
    """CPU threads for llama.cpp when none are set: the cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def llama_api() -> Any:
    """llama_cpp's C API, imported once, with llama.cpp's own log lines kept quiet."""
    try:
        import llama_cpp
    except ImportError as error:
        raise ComposerError(f"llama.cpp is not installed ({error}): run `bash scripts/setup.sh`"
                            f" (it builds {LLAMA_PIP}), or set COMPOSER_ENGINE=torch") from None
    logging.getLogger("llama-cpp-python").setLevel(logging.ERROR)
    llama_cpp.llama_backend_init()
    return llama_cpp


def requantize(source: Path, target: Path, kind: str = "q8_0") -> Path:
    """Write `source` (a GGUF) re-quantized to `kind` at `target`, atomically (a temporary
    file renamed into place). Q8_0 from a 4-bit file is close to exact (the 8-bit grid holds
    each 4-bit level to within half a step of 1/127 of the block's largest weight) and
    llama.cpp multiplies it with faster kernels than Q4_1 (bench/bench_llamacpp.py)."""
    api = llama_api()
    kinds = {"q8_0": api.LLAMA_FTYPE_MOSTLY_Q8_0}
    if kind not in kinds:
        raise ValueError(f"kind {kind!r} is not one of {sorted(kinds)}")
    params = api.llama_model_quantize_default_params()
    params.ftype = kinds[kind]
    params.allow_requantize = True
    params.nthread = default_threads()
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.with_name(f".{target.name}.tmp-{os.getpid()}-{threading.get_ident()}")
    try:
        status = api.llama_model_quantize(str(source).encode(), str(temp).encode(),
                                          ctypes.byref(params))
        if status != 0:
            raise ComposerError(f"llama.cpp could not re-quantize {source} (status {status}): "
                                f"check the disk space under {target.parent}")
        os.replace(temp, target)
    finally:
        temp.unlink(missing_ok=True)
    return target


class LlamaVocab:
    """The model's tokenizer through llama.cpp, with the encode/decode a transformers
    tokenizer offers (what models/text_stream.py and fit_prompt call)."""

    def __init__(self, api: Any, vocab: Any) -> None:
        self.api = api
        self.vocab = vocab
        self.size = api.llama_vocab_n_tokens(vocab)
        self._pieces: dict[tuple[int, bool], bytes] = {}

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        """Token ids of `text`; special tokens written in it (<|im_start|>) are parsed."""
        data = text.encode("utf-8")
        room = len(data) + 16
        buffer = (self.api.llama_token * room)()
        count = self.api.llama_tokenize(self.vocab, data, len(data), buffer, room,
                                        add_special_tokens, True)
        if count < 0:
            raise ValueError(f"the text of {len(data)} bytes did not tokenize ({count})")
        return list(buffer[:count])

    def piece(self, token_id: int, special: bool) -> bytes:
        """The bytes of one token (special tokens render as b"" unless `special`)."""
        key = (token_id, special)
        cached = self._pieces.get(key)
        if cached is None:
            buffer = ctypes.create_string_buffer(64)
            size = self.api.llama_token_to_piece(self.vocab, token_id, buffer, 64, 0, special)
            if size < 0:
                buffer = ctypes.create_string_buffer(-size)
                size = self.api.llama_token_to_piece(self.vocab, token_id, buffer, -size, 0,
                                                     special)
            cached = self._pieces[key] = buffer.raw[:size]
        return cached

    def decode(self, ids: list[int], skip_special_tokens: bool = False,
               clean_up_tokenization_spaces: bool = False) -> str:
        """The text of token ids; an incomplete character decodes as U+FFFD."""
        data = b"".join(self.piece(token_id, not skip_special_tokens) for token_id in ids)
        return data.decode("utf-8", errors="replace")

    def is_end(self, token_id: int) -> bool:
        return bool(self.api.llama_vocab_is_eog(self.vocab, token_id))

    def text(self, token_id: int) -> str:
        """A token's text as the vocabulary stores it ("" for none)."""
        if token_id < 0:
            return ""
        return (self.api.llama_vocab_get_text(self.vocab, token_id) or b"").decode(
            "utf-8", errors="replace")


class LlamaContext:
    """One llama.cpp context: its KV cache and a batch to fill."""

    def __init__(self, lm: Any) -> None:
        """lm: the LlamaCppLM whose api, model, context_length and threads it uses."""
        api = self.api = lm.api
        params = api.llama_context_default_params()
        params.n_ctx = lm.context_length
        params.n_batch = PREFILL_CHUNK
        params.n_ubatch = PREFILL_CHUNK
        params.n_seq_max = MAX_CANDIDATES
        params.kv_unified = True  # drafts share the prompt's cells
        params.n_threads = params.n_threads_batch = lm.threads
        params.no_perf = True
        self.ctx = api.llama_init_from_model(lm.model, params)
        if not self.ctx:
            raise ComposerError(f"llama.cpp could not make a context of {lm.context_length} "
                                "tokens (out of memory?): lower the context or free memory")
        self.memory = api.llama_get_memory(self.ctx)
        self.batch = api.llama_batch_init(max(PREFILL_CHUNK, MAX_CANDIDATES), 0, 1)

    def prefill(self, ids: list[int]) -> None:
        """Empty the cache, put `ids` in sequence 0 and compute the logits of the last one.

        Always from position 0, in the same chunks: reusing a cached beginning would decode
        the rest in other batch shapes, whose rounding differs, and the same prompt could
        then get a different reply depending on what this context decoded before.
        """
        self.api.llama_memory_clear(self.memory, True)
        for start in range(0, len(ids), PREFILL_CHUNK):
            chunk = ids[start:start + PREFILL_CHUNK]
            last = start + len(chunk) == len(ids)
            self.decode([(token_id, start + i, 0, last and i == len(chunk) - 1)
                         for i, token_id in enumerate(chunk)])

    def decode(self, entries: list[tuple[int, int, int, bool]]) -> None:
        """One llama_decode of (token id, position, sequence, wants logits) entries."""
        batch = self.batch
        for i, (token_id, position, seq, logits) in enumerate(entries):
            batch.token[i] = token_id
            batch.pos[i] = position
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = seq
            batch.logits[i] = logits
        batch.n_tokens = len(entries)
        status = self.api.llama_decode(self.ctx, batch)
        if status != 0:
            raise ComposerError(f"llama.cpp could not decode {len(entries)} tokens (status "
                                f"{status}): the context of {self.api.llama_n_ctx(self.ctx)} "
                                "tokens may be full")

    def free(self) -> None:
        self.api.llama_batch_free(self.batch)
        self.api.llama_free(self.ctx)


class LlamaSampler:
    """A llama.cpp sampler chain for one reply: repetition penalty, then greedy or
    temperature / top-k / top-p / seeded draw, in the order transformers applies them; and
    a grammar the reply must follow, if any."""

    def __init__(self, lm: Any, config: GenerationConfig, prompt: list[int], *,
                 sample: bool, seed: int | None, grammar: str | None = None) -> None:
        api = self.api = lm.api
        self.grammar = None
        if grammar is not None:
            self.grammar = api.llama_sampler_init_grammar(lm.vocab.vocab, grammar.encode(),
                                                          b"root")
            if not self.grammar:
                raise ValueError("json_schema did not translate to a llama.cpp grammar")
        self.chain = api.llama_sampler_chain_init(api.llama_sampler_chain_default_params())
        if config.repetition_penalty != 1.0:
            penalty = api.llama_sampler_init_penalties(
                lm.vocab.size, len(prompt) + config.max_new_tokens,
                config.repetition_penalty, 0.0, 0.0)
            for token_id in prompt:  # transformers penalises the prompt's tokens too
                api.llama_sampler_accept(penalty, token_id)
            api.llama_sampler_chain_add(self.chain, penalty)
        if sample:
            api.llama_sampler_chain_add(self.chain, api.llama_sampler_init_temp(
                config.temperature))
            if config.top_k > 0:
                api.llama_sampler_chain_add(self.chain, api.llama_sampler_init_top_k(
                    config.top_k))
            if config.top_p < 1.0:
                api.llama_sampler_chain_add(self.chain, api.llama_sampler_init_top_p(
                    config.top_p, 1))
            draw_seed = api.LLAMA_DEFAULT_SEED if seed is None else seed % 2**32
            api.llama_sampler_chain_add(self.chain, api.llama_sampler_init_dist(draw_seed))
        else:
            api.llama_sampler_chain_add(self.chain, api.llama_sampler_init_greedy())
        self.ngram = config.no_repeat_ngram_size
        self.history = list(prompt)
        self._candidates: Any = None  # the token array the grammar path fills, made once
        self._ids: Any = None

    def pick(self, ctx: LlamaContext, index: int, n_vocab: int) -> int:
        """The next token from the logits of batch entry `index` (-1: the last)."""
        if self.ngram > 0:
            banned = banned_ngram_tokens(self.history, self.ngram)
            if banned:
                import numpy as np

                self._logits(ctx, index, n_vocab)[list(banned)] = -np.inf
        if self.grammar is None:
            token_id = self.api.llama_sampler_sample(self.chain, ctx.ctx, index)
        else:
            token_id = self._pick_in_grammar(self._logits(ctx, index, n_vocab))
        self.history.append(token_id)
        return token_id

    def _logits(self, ctx: LlamaContext, index: int, n_vocab: int) -> Any:
        import numpy as np

        return np.ctypeslib.as_array(self.api.llama_get_logits_ith(ctx.ctx, index),
                                     shape=(n_vocab,))

    def _pick_in_grammar(self, logits: Any) -> int:
        """Sample as if unconstrained and keep the token when the grammar allows it; else
        mask the vocabulary with the grammar and sample again (llama.cpp's own sampler does
        the same: checking one token costs far less than masking every token)."""
        api = self.api
        token_id = self._apply(logits, with_grammar=False)
        one = api.llama_token_data_array((api.llama_token_data * 1)(
            api.llama_token_data(token_id, 0.0, 0.0)), 1, -1, False)
        api.llama_sampler_apply(self.grammar, ctypes.byref(one))
        if one.data[0].logit == float("-inf"):
            token_id = self._apply(logits, with_grammar=True)
        api.llama_sampler_accept(self.grammar, token_id)
        api.llama_sampler_accept(self.chain, token_id)
        return token_id

    def _apply(self, logits: Any, with_grammar: bool) -> int:
        """Run the chain (after the grammar, if asked) over every token; the chosen id."""
        import numpy as np

        api = self.api
        if self._candidates is None:
            self._candidates = np.zeros(len(logits), dtype=[("id", "<i4"), ("logit", "<f4"),
                                                            ("p", "<f4")])
            self._ids = np.arange(len(logits), dtype=np.int32)
        candidates = self._candidates
        candidates["id"] = self._ids  # the samplers reorder the array: reset it each time
        candidates["logit"] = logits
        array = api.llama_token_data_array(
            candidates.ctypes.data_as(ctypes.POINTER(api.llama_token_data)), len(logits),
            -1, False)
        if with_grammar:
            api.llama_sampler_apply(self.grammar, ctypes.byref(array))
        api.llama_sampler_apply(self.chain, ctypes.byref(array))
        return int(array.data[array.selected].id)

    def free(self) -> None:
        self.api.llama_sampler_free(self.chain)
        if self.grammar is not None:
            self.api.llama_sampler_free(self.grammar)


def banned_ngram_tokens(history: list[int], size: int) -> set[int]:
    """Tokens that would repeat an n-gram of `size` already in `history` (transformers'
    NoRepeatNGramLogitsProcessor)."""
    if len(history) < size:
        return set()
    tail = tuple(history[len(history) - size + 1:])
    return {history[i + size - 1] for i in range(len(history) - size + 1)
            if tuple(history[i:i + size - 1]) == tail}
