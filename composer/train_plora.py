"""Train the Partial-LoRA adapters and the image projector on (image, caption) pairs.

The language model and the vision tower stay frozen; what learns is every PLoRA adapter
(models/plora.py) and the encoder's trainable parts (projector, skip and newline embeddings,
models/vision.py). Each sample is a chat:

    user:      [image] "Describe this image."
    assistant: caption

built with models/interleave.py (the tokenizer's own chat template), and the loss is the
cross-entropy on the assistant's tokens only (the caption and the template's end of turn);
the prompt and the image positions are labelled -100. The image mask is set with
models/plora.image_mask during each forward, so the adapters act on image tokens only.

    pairs = library_pairs(store, limit=200)
    report = train_plora(model, tokenizer, encoder, pairs, TrainConfig(steps=300))
    save_trained("out", model, encoder, config, report, base_model=..., vision=...)
    ...
    load_trained("out", fresh_model, fresh_encoder)   # the app side (models/adapters.py)

A checkpoint folder holds plora/ (save_plora), vision_adapter.safetensors
(ImageEncoder.save_adapter) and train.json (settings, steps, loss history, base model and
vision ids, and fingerprints of both bases so a load onto other bases is refused); its
names, format and checks are models/adapters.py's, shared with the loading side.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from models.adapters import (
    PLORA_DIR,
    TRAIN_FORMAT,
    TRAIN_JSON,
    VISION_ADAPTER,
    plora_bases,
    write_record,
)
from models.interleave import ImageRef, build_inputs, render_template
from models.plora import (
    freeze_base,
    image_mask,
    inject_plora,
    plora_layers,
    plora_parameters,
)
from models.plora_io import save_plora

PROMPT = "Describe this image."
IGNORE = -100

Pair = tuple[Any, str]  # (image path or PIL image, caption)
Progress = Callable[[int, int, float], None]  # (steps done, total steps, running loss)


@dataclass
class TrainConfig:
    """Training settings. `rank` / `alpha` / `dropout` are used when the model has no PLoRA
    layers yet (they are injected); `lr` is AdamW's, `clip` the gradient-norm limit."""

    steps: int = 200
    batch_size: int = 4
    lr: float = 2e-4
    rank: int = 16
    alpha: float = 32
    dropout: float = 0.05
    weight_decay: float = 0.0
    clip: float = 1.0
    seed: int = 0
    prompt: str = PROMPT

    def check(self) -> None:
        """Raise ValueError naming the first setting out of range."""
        for name in ("steps", "batch_size", "rank"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} is {value!r}; it must be a whole number >= 1")
        for name in ("lr", "alpha", "clip"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not value > 0 or math.isinf(value):
                raise ValueError(f"{name} is {value!r}; it must be a number > 0")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout is {self.dropout!r}; it must be in [0, 1)")
        if not self.prompt.strip():
            raise ValueError("prompt is empty: give the user's instruction, e.g. "
                             f"{PROMPT!r}")


@dataclass
class TrainReport:
    """What a training run did: optimiser steps taken, the loss of each step, whether it was
    stopped early (stop set or Ctrl-C), how many pairs it drew from, and its duration."""

    steps: int = 0
    losses: list[float] = field(default_factory=list)
    stopped: bool = False
    pairs: int = 0
    seconds: float = 0.0

    @property
    def final_loss(self) -> float | None:
        """Mean loss of the last (up to) 10 steps; None before any step."""
        tail = self.losses[-10:]
        return sum(tail) / len(tail) if tail else None


# --- data -------------------------------------------------------------------------------


def library_pairs(store: Any, limit: int | None = None) -> list[Pair]:
    """(image file path, caption) of the library's captioned images, oldest first.

    Images whose caption is empty (or only spaces) are skipped; `limit` keeps at most that
    many pairs (None: all).
    """
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)
                              or limit < 1):
        raise ValueError(f"limit is {limit!r}; it must be a whole number >= 1 (or None)")
    pairs: list[Pair] = []
    for image in store.list():
        caption = (image.caption or "").strip()
        if not caption:
            continue
        pairs.append((store.path(image.id), caption))
        if limit is not None and len(pairs) >= limit:
            break
    return pairs


def sample_pieces(tokenizer: Any, image: Any, caption: str,
                  prompt: str = PROMPT) -> tuple[list, str]:
    """The pieces of one training chat and its answer text (the last piece).

    The prompt part is rendered exactly as for generation (user turn + generation prompt);
    the answer is what the template writes after it for the assistant's turn (the caption
    and its end-of-turn tokens). A template that does not extend the generation prompt that
    way falls back to the caption followed by the EOS token.
    """
    user = {"role": "user", "content": [{"type": "image", "image": image},
                                        {"type": "text", "text": prompt}]}
    prompt_pieces = render_template(tokenizer, [user], add_generation_prompt=True)
    full = render_template(tokenizer, [user, {"role": "assistant", "content": caption}],
                           add_generation_prompt=False)
    answer = ""
    if len(full) == len(prompt_pieces) and all(
            _same_piece(a, b) for a, b in zip(full[:-1], prompt_pieces[:-1], strict=True)) \
            and isinstance(full[-1], str) and isinstance(prompt_pieces[-1], str) \
            and full[-1].startswith(prompt_pieces[-1]):
        answer = full[-1][len(prompt_pieces[-1]):]
    if caption not in answer:
        answer = caption + (getattr(tokenizer, "eos_token", None) or "")
    return [*prompt_pieces, answer], answer


def _same_piece(a: Any, b: Any) -> bool:
    if isinstance(a, ImageRef) and isinstance(b, ImageRef):
        return a.image is b.image
    return a == b


def build_batch(model: nn.Module, tokenizer: Any, encoder: Any, pairs: Sequence[Pair],
                prompt: str = PROMPT) -> tuple[Any, torch.Tensor]:
    """(InterleavedBatch padded on the right, labels [B, T]) for a list of pairs.

    Labels hold the token ids of each sample's answer and -100 everywhere else (the image
    positions, the prompt, padding).
    """
    pieces, answers = [], []
    for image, caption in pairs:
        sample, answer = sample_pieces(tokenizer, image, caption, prompt)
        pieces.append(sample)
        answers.append(answer)
    batch = build_inputs(pieces, tokenizer, model.get_input_embeddings(), encoder.encode,
                         padding_side="right")
    labels = torch.full_like(batch.text_token_ids, IGNORE)
    for row, (answer, length) in enumerate(zip(answers, batch.lengths, strict=True)):
        count = len(tokenizer(answer, add_special_tokens=False)["input_ids"])
        labels[row, length - count:length] = batch.text_token_ids[row, length - count:length]
    return batch, labels


def caption_loss(model: nn.Module, batch: Any, labels: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy over the labelled (answer) positions, with the batch's
    image mask set on the model's PLoRA layers for the forward."""
    with image_mask(model, batch.image_mask):
        logits = model(**batch.model_inputs()).logits
    shifted = labels[:, 1:].to(logits.device)
    return nn.functional.cross_entropy(logits[:, :-1].float().reshape(-1, logits.shape[-1]),
                                       shifted.reshape(-1), ignore_index=IGNORE)


# --- training ---------------------------------------------------------------------------


def prepare(model: nn.Module, encoder: Any, config: TrainConfig) -> list[nn.Parameter]:
    """Inject PLoRA when missing, freeze the base LM and the tower; the trained parameters."""
    if not plora_layers(model):
        inject_plora(model, rank=config.rank, alpha=config.alpha, dropout=config.dropout)
    freeze_base(model)
    encoder.tower.requires_grad_(False)
    trained = [*plora_parameters(model), *encoder.trainable_parameters()]
    for parameter in trained:
        parameter.requires_grad_(True)
    return trained


def train_plora(model: nn.Module, tokenizer: Any, encoder: Any, pairs: Sequence[Pair],
                config: TrainConfig | None = None, progress: Progress | None = None,
                stop: Any = None) -> TrainReport:
    """Train the adapters and the projector for `config.steps` AdamW steps; a TrainReport.

    Batches of `batch_size` pairs are drawn in a seeded random order (a new permutation
    each pass over the pairs), so a run is repeatable. Gradients are clipped to norm
    `config.clip`. `progress(step, steps, running_loss)` is called after every step; when
    `stop` (anything with is_set(), e.g. a threading.Event) becomes set, or on Ctrl-C, the
    run ends after the current step (with report.stopped) and keeps what was trained.
    The base LM runs in eval mode (only the adapters' dropout is active); the model and
    the encoder are left in eval mode.
    """
    config = config or TrainConfig()
    config.check()
    pairs = list(pairs)
    if not pairs:
        raise ValueError("no (image, caption) pairs to train on: caption some library images "
                         "first")
    torch.manual_seed(config.seed)
    trained = prepare(model, encoder, config)
    optimizer = torch.optim.AdamW(trained, lr=config.lr, weight_decay=config.weight_decay)
    order = torch.Generator().manual_seed(config.seed)
    queue: list[int] = []
    report = TrainReport(pairs=len(pairs))
    started = time.monotonic()
    running = None
    model.eval()
    for layer in plora_layers(model).values():
        layer.train()
    encoder.train()
    try:
        for step in range(config.steps):
            if stop is not None and stop.is_set():
                report.stopped = True
                break
            chosen = []
            while len(chosen) < min(config.batch_size, len(pairs)):
                if not queue:
                    queue = torch.randperm(len(pairs), generator=order).tolist()
                chosen.append(pairs[queue.pop(0)])
            batch, labels = build_batch(model, tokenizer, encoder, chosen, config.prompt)
            loss = caption_loss(model, batch, labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trained, config.clip)
            optimizer.step()
            value = float(loss.detach())
            report.losses.append(value)
            report.steps = step + 1
            running = value if running is None else 0.9 * running + 0.1 * value
            if progress is not None:
                progress(report.steps, config.steps, running)
    except KeyboardInterrupt:
        report.stopped = True
    finally:
        model.eval()
        encoder.eval()
        for parameter in trained:
            parameter.grad = None
        report.seconds = time.monotonic() - started
    return report


# --- checkpoints ------------------------------------------------------------------------


def save_trained(folder: str | Path, model: nn.Module, encoder: Any, config: TrainConfig,
                 report: TrainReport, *, base_model: str = "", vision: str = "",
                 extra: dict | None = None) -> Path:
    """Write plora/, vision_adapter.safetensors and train.json to `folder`; returns it."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_plora(model, folder / PLORA_DIR)
    encoder.save_adapter(folder / VISION_ADAPTER)
    record = {
        "format": TRAIN_FORMAT,
        "base_model": base_model or getattr(getattr(model, "config", None),
                                            "_name_or_path", "") or "",
        "vision": vision or encoder.tower.name,
        "config": dataclasses.asdict(config),
        "max_tiles": encoder.max_tiles, "newline": encoder.use_newline,
        "steps": report.steps, "stopped": report.stopped, "pairs": report.pairs,
        "seconds": round(report.seconds, 3), "losses": report.losses,
        "bases": plora_bases(model, encoder),
        **(extra or {}),
    }
    write_record(folder, TRAIN_JSON, record)
    return folder


# --- loading the bases (for the command line) -------------------------------------------


def looks_local(source: str) -> bool:
    """True when `source` names a folder rather than a Hugging Face model id."""
    return source.startswith((".", "/", "~")) or Path(source).expanduser().exists()


def check_source(source: str, what: str) -> str:
    """`source` stripped; FileNotFoundError when it names a local folder that is missing."""
    source = str(source).strip()
    if not source:
        raise FileNotFoundError(f"the {what} is empty: give a model id or a local folder")
    if looks_local(source) and not Path(source).expanduser().is_dir():
        raise FileNotFoundError(f"{what} folder {source!r} does not exist: give the folder "
                                "that holds config.json and the weights, or a model id")
    return source


def load_language_model(source: str, device: str = "cpu") -> tuple[nn.Module, Any]:
    """(LlamaForCausalLM-like model in float32, its tokenizer) from a model id or folder.

    A missing local folder raises FileNotFoundError; a model that cannot be loaded raises
    RuntimeError with the reason.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = check_source(source, "language model")
    local = looks_local(source)
    where = str(Path(source).expanduser()) if local else source
    options = {"local_files_only": True} if local else {}
    try:
        tokenizer = AutoTokenizer.from_pretrained(where, **options)
        model = AutoModelForCausalLM.from_pretrained(where, dtype=torch.float32, **options)
    except (OSError, ValueError, KeyError) as error:
        raise RuntimeError(f"could not load the language model {source!r} "
                           f"({type(error).__name__}: {error})") from error
    return model.to(device).eval(), tokenizer
