"""OPERA decoding for Hugging Face causal LMs (Huang et al., arXiv 2311.17911).

OPERA ("Over-trust Penalty and Retrospection-Allocation") is a beam search that watches the
model's own attention. Long, hallucinating replies tend to follow a "summary token": a token
that every later token keeps attending to, while attention to the grounding (in the paper the
image; here the outline, captions or pasted material) fades. Per step and per beam:

1. the top-K tokens by (penalised) logit are the candidates (K = `num_attn_candidates`);
2. each candidate is run one step through the model (the K of all beams in one batch, on a
   copy of the beam's KV cache); the last layer's attention of the new token, max over heads,
   becomes a new row of the beam's response x response attention map (rows normalised);
3. the over-trust penalty of a candidate is the largest column score of that map, where a
   column's score is the product of its entries at and below the diagonal, each scaled by
   `scale_factor` (only the last `window` response positions are looked at);
   for the first 10 reply tokens, when a `grounding` span of the prompt is given, the penalty
   is instead minus the attention mass on that span (looking at the material is rewarded);
4. candidate score = log-softmax over the K candidates of (logit - `penalty_weights` x
   penalty); beams are ranked on the summed scores as in `model.generate` beam search
   (length penalty 1, `early_stopping=False`);
5. retrospection: the column with the largest score is the beam's "location". When on every
   beam the current location has been the location more than `threshold` times (and lies at
   reply position >= 10), decoding rolls back to just after that column, bans the tokens the
   beams chose there, and decodes again; at most K rollbacks per position.

Settings (`OperaSettings`): scale_factor 50, threshold 15, num_attn_candidates 5,
penalty_weights 1, window 512 as in the authors' code; `OperaSettings.efficient()` is their
cheaper preset (threshold 25, 1 candidate); with one candidate the log-softmax over it is
always 0, so the penalty cannot reorder anything and the search keeps a single beam: it is
greedy decoding plus retrospection. `beams` is the beam count used when the
GenerationConfig asks for fewer: OPERA is a beam search, so `max(config.num_beams, beams)`
beams run (default 3; the paper used 5).

As in the authors' code each column product is multiplied by 1e-7 (COLUMN_SCALE), so a column
only weighs like a logit once many later tokens attended to it strongly. Products are taken
in log space, and only differences between a beam's candidates matter (the log-softmax is per
beam), so long maps neither overflow nor underflow.

The model runs with eager attention during the call (SDPA returns no attention weights); the
previous implementation is restored afterwards. Decoding is deterministic (no sampling).
"""

from __future__ import annotations

import contextlib
import copy
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from transformers import DynamicCache

from composer.types import GenerationConfig
from models.generate import build_processors, forward_options

GROUNDING_TOKENS = 10  # reply tokens rewarded for attending to the grounding span
COLUMN_SCALE = 1e-7  # the authors' factor on each column product
LOG_CAP = 700.0  # exp(700) still fits a float64
LENGTH_PENALTY = 1.0  # model.generate's default: finished scores divided by the length


@dataclass(frozen=True)
class OperaSettings:
    """OPERA's knobs; see the module docstring."""

    scale_factor: float = 50.0
    threshold: int = 15
    num_attn_candidates: int = 5
    penalty_weights: float = 1.0
    window: int = 512
    beams: int = 3

    @classmethod
    def efficient(cls, **changes: Any) -> OperaSettings:
        """The authors' cheaper preset: threshold 25, one attention candidate."""
        values: dict[str, Any] = {"threshold": 25, "num_attn_candidates": 1}
        values.update(changes)
        return cls(**values)


# -- the penalty and the retrospection decision (pure functions on small tensors) -----------

def overtrust_penalty(attn_map: torch.Tensor, scale_factor: float
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Over-trust penalty and its column for square attention maps [..., m, m].

    Column j's score is COLUMN_SCALE x the product of scale_factor x map[i, j] for i >= j;
    the penalty is the largest score (float64, capped at exp(LOG_CAP)), the column its index.
    """
    size = attn_map.shape[-1]
    scaled = attn_map.to(torch.float64) * scale_factor
    lower = torch.ones(size, size, dtype=torch.bool, device=attn_map.device).tril()
    logs = torch.where(lower, scaled.clamp_min(0).log(), torch.zeros((), dtype=torch.float64,
                                                                      device=attn_map.device))
    column_logs = logs.sum(dim=-2) + torch.log(torch.tensor(COLUMN_SCALE, dtype=torch.float64))
    best, column = column_logs.max(dim=-1)
    return best.clamp_max(LOG_CAP).exp(), column


def grounding_penalty(rows: torch.Tensor, grounding: tuple[int, int]) -> torch.Tensor:
    """Minus the attention mass on prompt positions [start, end) of attention rows [..., L]."""
    start, end = grounding
    return -rows[..., start:end].to(torch.float64).sum(dim=-1)


def rollback_position(locations: torch.Tensor, threshold: int,
                      min_position: int = GROUNDING_TOKENS) -> int | None:
    """Where retrospection rolls back to, or None.

    locations: [beams, n] long, each beam's location (argmax column) after each reply token.
    When on every beam the latest location occurs more than `threshold` times in its history,
    the earliest of those columns is the summary token; if it sits at position >= min_position
    decoding restarts just after it (the returned reply length).
    """
    if locations.numel() == 0:
        return None
    latest = locations[:, -1]
    counts = (locations == latest[:, None]).sum(dim=-1)
    if not bool((counts > threshold).all()):
        return None
    column = int(latest.min())
    return column + 1 if column >= min_position else None


def candidate_maps(maps: torch.Tensor, rows: torch.Tensor, window: int) -> torch.Tensor:
    """Each beam's map [b, m, m] extended by each candidate's row [b, K, n + 1] (normalised
    over the reply), kept to the last `window` positions: [b, K, m', m']."""
    beams, count, length = rows.shape
    keep = min(length, window)
    old = maps[:, -(keep - 1):, -(keep - 1):] if keep > 1 else maps[:, :0, :0]
    old = torch.nn.functional.pad(old, (0, 1))  # the new token's column: nobody saw it yet
    old = old[:, None].expand(beams, count, keep - 1, keep)
    return torch.cat([old, rows[:, :, None, -keep:]], dim=2)


def normalise(rows: torch.Tensor) -> torch.Tensor:
    """Rows divided by their sums (all-zero rows stay zero)."""
    return rows / rows.sum(dim=-1, keepdim=True).clamp_min(1e-12)


# -- model plumbing ---------------------------------------------------------------------------

@contextlib.contextmanager
def eager_attention(model: Any) -> Iterator[None]:
    """Run `model` with eager attention inside the block; restore the previous one after."""
    previous = model.config._attn_implementation
    if previous == "eager":
        yield
        return
    switch = getattr(model, "set_attn_implementation", None)
    try:
        if switch is not None:
            switch("eager")
        else:
            model.config._attn_implementation = "eager"
        yield
    finally:
        if switch is not None:
            switch(previous)
        else:
            model.config._attn_implementation = previous


def run_model(model: Any, ids: torch.Tensor, cache: DynamicCache, options: dict[str, Any],
              attentions: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Forward `ids` [batch, q] with the cache: float32 logits [batch, vocab] of the last
    position and, when asked, the last layer's attention, max over heads [batch, q, length]."""
    kwargs: dict[str, Any] = {options["cache_name"]: cache, "use_cache": True,
                              "output_attentions": attentions}
    if options["keep_last"]:
        kwargs["logits_to_keep"] = 1
    output = model(input_ids=ids, **kwargs)
    logits = output.logits[:, -1, :].to(torch.float32)
    if not attentions:
        return logits, None
    return logits, output.attentions[-1].amax(dim=1).to(torch.float32)


# -- the search -------------------------------------------------------------------------------

@dataclass
class Beams:
    """The running beams, best first. tokens / locations: [b, n]; scores: [b] summed
    candidate log-probabilities; maps: [b, m, m]; logits: [b, vocab] for the next token."""

    tokens: torch.Tensor
    scores: torch.Tensor
    locations: torch.Tensor
    maps: torch.Tensor
    logits: torch.Tensor
    cache: DynamicCache


@dataclass
class Search:
    """Everything one call keeps between steps."""

    model: Any
    prompt_ids: torch.Tensor
    prompt_cache: DynamicCache
    options: dict[str, Any]
    settings: OperaSettings
    num_beams: int
    eos: torch.Tensor
    processors: Any
    max_new_tokens: int
    grounding: tuple[int, int] | None
    finished: list[tuple[float, list[int]]]
    snapshots: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]
    banned: dict[int, set[int]]
    rollbacks: dict[int, int]
    prompt_logits: torch.Tensor | None = None

    @property
    def prompt_length(self) -> int:
        return self.prompt_ids.shape[1]


def start_beams(search: Search, tokens: torch.Tensor, scores: torch.Tensor,
                locations: torch.Tensor) -> Beams:
    """Beams for reply prefixes `tokens` [b, n], with their cache, maps and next logits
    (recomputed from the prompt's cache)."""
    cache = copy.deepcopy(search.prompt_cache)
    count, length = tokens.shape
    cache.batch_repeat_interleave(count)
    if length == 0:
        logits = search.prompt_logits.expand(count, -1)
        maps = torch.zeros(count, 0, 0, device=tokens.device)
    else:
        logits, attention = run_model(search.model, tokens, cache, search.options, True)
        rows = normalise(attention[:, :, search.prompt_length:])
        keep = min(length, search.settings.window)
        maps = rows[:, -keep:, -keep:]
    return Beams(tokens, scores, locations, maps.to(torch.float32), logits, cache)


def add_finished(search: Search, score: float, tokens: list[int], length: int) -> None:
    """Keep the `num_beams` best finished replies (score divided by the generated length,
    EOS included, as model.generate does)."""
    search.finished.append((score / length ** LENGTH_PENALTY, tokens))
    search.finished.sort(key=lambda item: -item[0])
    del search.finished[search.num_beams:]


def step(search: Search, beams: Beams) -> Beams | None:
    """One reply token for every beam; None when no beam runs on."""
    settings, length = search.settings, beams.tokens.shape[1]
    history = torch.cat([search.prompt_ids.expand(beams.tokens.shape[0], -1),
                         beams.tokens], dim=1)
    logits = search.processors(history, beams.logits.clone())
    for token in search.banned.get(length, ()):
        logits[:, token] = float("-inf")
    count = min(settings.num_attn_candidates, logits.shape[-1])
    top_logits, candidates = logits.topk(count, dim=-1)  # [b, K]
    beam_count = candidates.shape[0]

    # every candidate one step ahead, on a copy of its beam's cache
    cache = beams.cache
    cache.batch_repeat_interleave(count)
    next_logits, attention = run_model(search.model, candidates.reshape(-1, 1), cache,
                                       search.options, True)
    raw_rows = attention[:, 0, :].reshape(beam_count, count, -1)  # [b, K, prompt + n + 1]
    rows = normalise(raw_rows[:, :, search.prompt_length:])
    maps = candidate_maps(beams.maps, rows, settings.window)
    penalty, column = overtrust_penalty(maps, settings.scale_factor)
    column = column + (length + 1 - maps.shape[-1])  # window index -> reply position
    if search.grounding is not None and length < GROUNDING_TOKENS:
        penalty = grounding_penalty(raw_rows, search.grounding)
    penalty = penalty - penalty.min(dim=-1, keepdim=True).values
    scores = torch.log_softmax(top_logits.to(torch.float64)
                               - settings.penalty_weights * penalty, dim=-1).to(torch.float32)
    total = (beams.scores[:, None] + scores).reshape(-1)

    # rank as model.generate's beam search does
    flat_tokens = candidates.reshape(-1)
    is_eos = torch.isin(flat_tokens, search.eos).tolist()
    at_limit = length + 1 >= search.max_new_tokens
    top_scores, top = total.topk(min(2 * search.num_beams, total.numel()))
    running = []
    for rank, (score, index) in enumerate(zip(top_scores.tolist(), top.tolist())):
        if is_eos[index] or at_limit:
            if rank < search.num_beams:
                reply = beams.tokens[index // count].tolist()
                if not is_eos[index]:
                    reply.append(int(flat_tokens[index]))
                add_finished(search, score, reply, length + 1)
        elif len(running) < search.num_beams:
            running.append(index)
    if not running:
        return None
    chosen = torch.tensor(running, dtype=torch.long, device=flat_tokens.device)
    parents = chosen // count
    cache.batch_select_indices(chosen)
    flat_maps = maps.reshape(beam_count * count, *maps.shape[2:])
    return Beams(
        tokens=torch.cat([beams.tokens[parents], flat_tokens[chosen, None]], dim=1),
        scores=total[chosen],
        locations=torch.cat([beams.locations[parents], column.reshape(-1)[chosen, None]], dim=1),
        maps=flat_maps[chosen],
        logits=next_logits[chosen],
        cache=cache,
    )


def should_stop(search: Search, beams: Beams) -> bool:
    """model.generate's early stop (early_stopping=False): all beam slots hold finished
    replies and the best running beam, at its current length, scores below the worst."""
    if len(search.finished) < search.num_beams:
        return False
    best = float(beams.scores[0]) / beams.tokens.shape[1] ** LENGTH_PENALTY
    return best <= search.finished[-1][0]


def retrospect(search: Search, beams: Beams) -> Beams:
    """Roll back to just after a summary token when the locations say so (see module doc)."""
    position = rollback_position(beams.locations, search.settings.threshold)
    if position is None or position not in search.snapshots:
        return beams
    if search.rollbacks.get(position, 0) >= search.settings.num_attn_candidates:
        return beams
    search.rollbacks[position] = search.rollbacks.get(position, 0) + 1
    search.banned.setdefault(position, set()).update(beams.tokens[:, position].tolist())
    for later in [key for key in search.snapshots if key > position]:
        del search.snapshots[later]
    tokens, scores, locations = search.snapshots[position]
    return start_beams(search, tokens, scores, locations)


def best_reply(search: Search, beams: Beams | None) -> list[int]:
    """The best finished reply, or the best running beam if that scores higher (or none
    finished: a cancelled call)."""
    options = list(search.finished)
    if beams is not None and beams.tokens.shape[0]:
        length = max(beams.tokens.shape[1], 1)
        options.append((float(beams.scores[0]) / length ** LENGTH_PENALTY,
                        beams.tokens[0].tolist()))
    if not options:
        return []
    return max(options, key=lambda item: item[0])[1]


def opera_generate(model: Any, prompt_ids: torch.Tensor, config: GenerationConfig,
                   eos_ids: Iterable[int], cancel: threading.Event | None = None,
                   grounding: tuple[int, int] | None = None,
                   settings: OperaSettings = OperaSettings()) -> list[int]:
    """The reply token ids (without EOS) OPERA decodes for prompt_ids [1, n].

    Uses max(config.num_beams, settings.beams) beams and config.repetition_penalty /
    no_repeat_ngram_size (sampling settings are ignored: OPERA is deterministic). Stops at an
    EOS id, after config.max_new_tokens, or when `cancel` is set (checked before each step;
    the best beam so far is returned). grounding: a prompt index range [start, end) whose
    attention the first reply tokens are rewarded for.
    """
    if config.max_new_tokens < 1:
        return []
    processors = build_processors(config.replace(do_sample=False))
    with eager_attention(model):
        with torch.inference_mode():
            prompt_ids = prompt_ids.to(model.device)
            options = forward_options(model)
            prompt_cache = DynamicCache(config=getattr(model, "config", None))
            prompt_logits, _ = run_model(model, prompt_ids, prompt_cache, options, False)
        search = Search(
            model=model, prompt_ids=prompt_ids, prompt_cache=prompt_cache, options=options,
            settings=settings, num_beams=max(config.num_beams, settings.beams),
            eos=torch.tensor(sorted(set(eos_ids)), dtype=torch.long, device=prompt_ids.device),
            processors=processors, max_new_tokens=config.max_new_tokens, grounding=grounding,
            finished=[], snapshots={}, banned={}, rollbacks={}, prompt_logits=prompt_logits,
        )
        empty = torch.zeros(1, 0, dtype=torch.long, device=prompt_ids.device)
        with torch.inference_mode():
            beams: Beams | None = start_beams(search, empty, torch.zeros(1, device=empty.device),
                                              empty.clone())
        while beams is not None:
            if cancel is not None and cancel.is_set():
                break
            # inference mode per step only (see models/generate.py)
            with torch.inference_mode():
                length = beams.tokens.shape[1]
                search.snapshots[length] = (beams.tokens, beams.scores, beams.locations)
                beams = step(search, beams)
                if beams is None or should_stop(search, beams):
                    return best_reply(search, None)
                beams = retrospect(search, beams)
        return best_reply(search, beams)
