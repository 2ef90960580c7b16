"""Token-by-token decoding for causal language models, in the caller's thread.

Short pure functions plus one generator (`generate_tokens`) that yields token ids, after
litgpt's `generate/base.py`. Logits are processed by transformers' own LogitsProcessor
classes, so greedy decoding matches `model.generate(do_sample=False)` token for token.
Why not `model.generate` with a streamer: that needs a second thread and per-step machinery
that costs ~15% of the decoding speed of a 135M model on a small CPU.

The token ids become text in models/text_stream.py (torch-free, shared with the llama.cpp
backend).
"""

from __future__ import annotations

import inspect
import threading
from contextlib import contextmanager
from typing import Any, Callable, Iterable, Iterator

import torch
from transformers import (
    DynamicCache,
    LogitsProcessorList,
    NoRepeatNGramLogitsProcessor,
    RepetitionPenaltyLogitsProcessor,
    StoppingCriteria,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from composer.types import GenerationConfig

Forward = Callable[[torch.Tensor, DynamicCache, dict[str, Any]], torch.Tensor]


def build_processors(config: GenerationConfig) -> LogitsProcessorList:
    """The logits processors for a config, in the order `model.generate` applies them."""
    processors = LogitsProcessorList()
    if config.repetition_penalty != 1.0:
        processors.append(RepetitionPenaltyLogitsProcessor(config.repetition_penalty))
    if config.no_repeat_ngram_size > 0:
        processors.append(NoRepeatNGramLogitsProcessor(config.no_repeat_ngram_size))
    if config.do_sample:
        if config.temperature != 1.0:
            processors.append(TemperatureLogitsWarper(config.temperature))
        if config.top_k > 0:
            processors.append(TopKLogitsWarper(config.top_k))
        if config.top_p < 1.0:
            processors.append(TopPLogitsWarper(config.top_p))
    return processors


def pick_token(scores: torch.Tensor, do_sample: bool,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """The next token ([1, 1] long) from processed scores [1, vocab]: argmax or a draw."""
    if do_sample:
        probs = torch.softmax(scores, dim=-1)
        return torch.multinomial(probs, num_samples=1, generator=generator)
    return scores.argmax(dim=-1, keepdim=True)


def seeded_generator(seed: int | None, device: torch.device) -> torch.Generator | None:
    """A private random generator for one reply (None: use torch's global one).

    Private so that two replies decoded at once in different threads do not share a random
    stream; seeded the same way it draws the same tokens as `torch.manual_seed(seed)` would.
    """
    if seed is None:
        return None
    return torch.Generator(device=device).manual_seed(seed)


@contextmanager
def seeded_rng(seed: int | None) -> Iterator[None]:
    """Run the block on a private copy of torch's random state seeded with `seed` (None: the
    global state as it is).

    For `model.generate` (beam search with sampling), which draws from the global RNG and
    takes no generator: seeded, the reply is repeatable and the caller's random stream is
    left as it was (the state is restored after the block).
    """
    if seed is None:
        yield
        return
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def forward_options(model: Any) -> dict[str, Any]:
    """Keyword names this model's forward takes: the cache argument, and logits_to_keep.

    transformers 5 renamed `past_key_values` to `cache`; remote-code models may still use
    the old name or lack `logits_to_keep` (then logits of every position come back).
    """
    parameters = inspect.signature(model.forward).parameters
    return {
        "cache_name": "cache" if "cache" in parameters else "past_key_values",
        "keep_last": "logits_to_keep" in parameters,
    }


def forward_last(model: Any, input_ids: torch.Tensor, cache: DynamicCache,
                 options: dict[str, Any]) -> torch.Tensor:
    """Run the model on new tokens with the cache; float32 logits [1, vocab] of the last one."""
    kwargs: dict[str, Any] = {options["cache_name"]: cache, "use_cache": True}
    if options["keep_last"]:
        kwargs["logits_to_keep"] = 1
    output = model(input_ids=input_ids, **kwargs)
    return output.logits[:, -1, :].to(torch.float32)


def generate_tokens(model: Any, prompt_ids: torch.Tensor, config: GenerationConfig,
                    eos_ids: Iterable[int], cancel: threading.Event | None = None,
                    forward: Forward | None = None, constraint: Any | None = None
                    ) -> Iterator[int]:
    """Yield new token ids one at a time: greedy or sampled, with penalties applied.

    prompt_ids: [1, n] long tensor on the model's device. Stops after config.max_new_tokens,
    at an EOS id (not yielded) or when `cancel` is set (checked before every forward pass).
    Sampling draws from a generator seeded with config.seed (torch's global one when None).
    `forward(new_ids, cache, options)` replaces forward_last (same contract), e.g. to prefill
    from inputs_embeds (models/vision_writer.py); it gets prompt_ids first, then each token.
    `constraint` (models/constrained.py JsonSchemaConstraint) masks the scores to the tokens
    its grammar allows before each pick, and ends the reply once its value is complete.
    """
    forward = forward or (lambda ids, cache, options: forward_last(model, ids, cache, options))
    processors = build_processors(config)
    generator = seeded_generator(config.seed, prompt_ids.device) if config.do_sample else None
    eos = set(eos_ids)
    # History of prompt + reply for the penalties; preallocated so each step is a slice.
    length = prompt_ids.shape[1]
    history = torch.empty((1, length + config.max_new_tokens), dtype=torch.long,
                          device=prompt_ids.device)
    history[:, :length] = prompt_ids
    cache = DynamicCache(config=getattr(model, "config", None))
    options = forward_options(model)
    next_input = prompt_ids
    for _ in range(config.max_new_tokens):
        if cancel is not None and cancel.is_set():
            return
        # Grad mode is per thread and a caller (Gradio) may advance this generator from a
        # different thread each time: the mode is entered and left within one step, never
        # held across a yield.
        with torch.inference_mode():
            # 1. forward the new tokens (the whole prompt the first time), keep last logits
            logits = forward(next_input, cache, options)
            # 2. penalties and warpers see the whole history, as in model.generate
            # (the schema's mask first, so that top-k / top-p choose among allowed tokens)
            if constraint is not None:
                logits = constraint.mask(logits)
            scores = processors(history[:, :length], logits)
            # 3. choose, then stop at EOS or record the token and feed it back
            token = pick_token(scores, config.do_sample, generator)
        token_id = int(token.item())
        if constraint is not None:
            constraint.accept(token_id)
        if token_id in eos:
            return
        history[:, length] = token_id
        length += 1
        next_input = token.to(prompt_ids.device)
        yield token_id
        if constraint is not None and constraint.done:
            return


class CancelCriteria(StoppingCriteria):
    """Stops `model.generate` (beam search) once a threading.Event is set."""

    def __init__(self, cancel: threading.Event) -> None:
        self.cancel = cancel

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any
                 ) -> torch.BoolTensor:
        return torch.full((input_ids.shape[0],), self.cancel.is_set(), dtype=torch.bool,
                          device=input_ids.device)


class BatchDecoder:
    """Decode `count` replies to one prompt together, one forward pass per step for all rows.

    The prompt is prefilled once and its cache copied to every row, so k drafts cost one
    prefill and k-row decode steps (a memory-bound step costs far less than k single ones).
    Row 0 decodes as `config` says (greedy, or sampled with config.seed), so it is the reply
    `generate_tokens` would give; the other rows always sample (the config's temperature,
    top-k and top-p, `sample_top`) from private generators seeded seed + row, so they differ
    from row 0 and from each other, and repeat with the seed. Iterating yields, per step,
    one entry per row: the new token id, or None for a row that has ended (EOS,
    max_new_tokens, or `finish(row)` from the caller, e.g. on a stop string). Finished rows
    leave the batch (their cache rows are dropped).
    """

    def __init__(self, model: Any, prompt_ids: torch.Tensor, config: GenerationConfig,
                 count: int, eos_ids: Iterable[int],
                 cancel: threading.Event | None = None) -> None:
        if count < 1:
            raise ValueError(f"count is {count}; it must be at least 1")
        self.model = model
        self.prompt_ids = prompt_ids
        self.config = config
        self.count = count
        self.eos = set(eos_ids)
        self.cancel = cancel
        self.finished: set[int] = set()

    def finish(self, row: int) -> None:
        """End `row` now: it yields None from the next step on and leaves the batch."""
        self.finished.add(row)

    def _samples(self, row: int) -> bool:
        return self.config.do_sample or row > 0

    def __iter__(self) -> Iterator[list[int | None]]:
        config, device = self.config, self.prompt_ids.device
        penalties = build_processors(config.replace(do_sample=False))
        warpers = build_processors(config.replace(do_sample=True, repetition_penalty=1.0,
                                                  no_repeat_ngram_size=0))
        seed = config.seed if config.seed is not None else 0
        generators = [seeded_generator(seed + row, device) if self._samples(row) else None
                      for row in range(self.count)]
        length = self.prompt_ids.shape[1]
        history = self.prompt_ids.repeat(self.count, 1)
        history = torch.cat([history, history.new_empty((self.count, config.max_new_tokens))],
                            dim=1)
        cache = DynamicCache(config=getattr(self.model, "config", None))
        options = forward_options(self.model)
        live = list(range(self.count))  # rows still in the batch, in cache order
        next_input = self.prompt_ids
        for step in range(config.max_new_tokens):
            if self.cancel is not None and self.cancel.is_set():
                return
            keep = [index for index, row in enumerate(live) if row not in self.finished]
            if not keep:
                return
            with torch.inference_mode():
                if step == 0:
                    logits = forward_last(self.model, next_input, cache, options)
                    cache.batch_repeat_interleave(len(keep))
                    logits = logits.repeat(len(keep), 1)
                    live = [live[index] for index in keep]
                else:
                    if len(keep) < len(live):  # finished rows leave the batch
                        rows = torch.tensor(keep, device=device)
                        cache.batch_select_indices(rows)
                        next_input = next_input[rows]
                        live = [live[index] for index in keep]
                    logits = forward_last(self.model, next_input, cache, options)
                scores = penalties(history[live, :length], logits)
                picked = [self._pick(scores[i:i + 1], warpers, history[row:row + 1, :length],
                                     generators[row], row) for i, row in enumerate(live)]
            out: list[int | None] = [None] * self.count
            for row, token_id in zip(live, picked):
                history[row, length] = token_id
                if token_id in self.eos:
                    self.finished.add(row)
                else:
                    out[row] = token_id
            length += 1
            next_input = torch.tensor([[token_id] for token_id in picked], dtype=torch.long,
                                      device=device)
            yield out

    def _pick(self, scores: torch.Tensor, warpers: LogitsProcessorList,
              history: torch.Tensor, generator: torch.Generator | None, row: int) -> int:
        if not self._samples(row):
            return int(scores.argmax(dim=-1).item())
        if row == 0:  # the reply `generate_tokens` gives: the same warpers and draw
            return int(pick_token(warpers(history, scores), True, generator).item())
        return sample_top(scores, self.config, generator)


def sample_top(scores: torch.Tensor, config: GenerationConfig,
               generator: torch.Generator | None) -> int:
    """One token drawn from scores [1, vocab] under the config's temperature, top-k and
    top-p: the distribution of transformers' warpers, computed over the top-k only (sorting
    the whole vocabulary for top-p costs more than a small model's decode step)."""
    scores = scores / config.temperature
    if 0 < config.top_k < scores.shape[-1]:
        values, indices = scores.topk(config.top_k, dim=-1)
    else:
        values, indices = scores.sort(dim=-1, descending=True)
    probs = torch.softmax(values, dim=-1)
    if config.top_p < 1.0:
        before = probs.cumsum(dim=-1) - probs  # mass of the more likely tokens
        probs = probs.masked_fill(before >= config.top_p, 0.0)
    choice = torch.multinomial(probs, num_samples=1, generator=generator)
    return int(indices.gather(-1, choice).item())
