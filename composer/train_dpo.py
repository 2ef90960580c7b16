"""Train the writer on users' edits: LoRA adapters learned with DPO (HA-DPO, REFERENCE.md 5).

Each preference pair (storage/pairs.py, `pairs export`) is one paragraph the model wrote
(`rejected`) and the text the person kept instead (`chosen`), under the chat prompt that asked
for it. TRL's DPOTrainer optimises

    beta-DPO loss  -log sigmoid(beta * ((log pi(c) - log pi(r)) - (log ref(c) - log ref(r))))
  + sft_weight x   mean negative log-likelihood of the chosen tokens

(`loss_type=["sigmoid", "sft"]`, `loss_weights=[1, sft_weight]`; beta 0.1 and weight 0.5 as
HA-DPO), with summed response log-probabilities. The reference model is the same network with
the adapters switched off, so no second copy of the weights is held.

Which adapters, and why: ordinary LoRA (peft) on the attention and MLP projections
(q/k/v/o/gate/up/down) acting on every token. DPO pairs are text, so every position whose
probability the loss reads is a text token. The Partial LoRA of models/plora.py adds its
update only at image-token positions (InternLM-XComposer2): on a text-only pair its delta is
exactly zero, it receives no gradient, and text-only writing with PLoRA is exactly the base
model. So the writer's text behaviour can only be changed by adapters on text tokens.

    records = read_pairs("pairs.jsonl")
    model, tokenizer, base = load_writer("embedded", cache_dir)
    peft_model, report = train_dpo(model, tokenizer, records, DPOSettings(epochs=2))
    save_dpo("adapters/", peft_model, tokenizer, DPOSettings(), report, base_model=base)

The output folder holds adapter_config.json + adapter_model.safetensors (peft's
save_pretrained) and dpo.json (settings, loss and reward margin before / after, the base
model's name and a fingerprint of its weights; names, format and base description are
models/adapters.py's). models/writer_adapter.py loads it onto the writer
(COMPOSER_WRITER_ADAPTER) and refuses a folder trained on another base model.
"""

from __future__ import annotations

import dataclasses
import json
import math
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from models.adapters import DPO_FORMAT, DPO_RECORD, base_description, write_record

TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
DEVICES = ("auto", "cpu", "cuda")

Progress = Callable[[int, int, float], None]  # (steps done, total steps, last loss)


@dataclass
class DPOSettings:
    """Training settings (the `train-dpo` flags).

    beta: DPO's strength of the pull toward the reference (0.1, HA-DPO); sft_weight: weight of
    the NLL on the chosen text (0.5, HA-DPO; 0 turns it off). rank / alpha / dropout: the LoRA
    adapters (dropout is switched off by DPOTrainer's disable_dropout, so that the policy and
    the reference see the same network). steps: a fixed number of optimiser steps, overriding
    epochs. max_length: tokens of prompt + reply kept (the start is kept).
    """

    epochs: float = 1.0
    steps: int | None = None
    lr: float = 1e-4
    beta: float = 0.1
    sft_weight: float = 0.5
    rank: int = 16
    alpha: float = 32.0
    dropout: float = 0.05
    batch_size: int = 2
    max_length: int = 512
    seed: int = 0
    scheduler: str = "linear"
    device: str = "auto"
    target_modules: tuple[str, ...] = TARGET_MODULES

    def check(self) -> None:
        """ValueError naming the first setting out of range."""
        positive = {"epochs": self.epochs, "lr": self.lr, "beta": self.beta,
                    "rank": self.rank, "alpha": self.alpha, "batch_size": self.batch_size,
                    "max_length": self.max_length}
        for name, value in positive.items():
            if not isinstance(value, (int, float)) or not 0 < value < math.inf:
                raise ValueError(f"{name} is {value!r}; it must be greater than 0")
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"steps is {self.steps}; it must be at least 1 (or unset to "
                             "train for --epochs)")
        if not 0 <= self.sft_weight < math.inf:
            raise ValueError(f"sft_weight is {self.sft_weight}; it must be 0 or more")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout is {self.dropout}; it must be in [0, 1)")
        if self.max_length < 8:
            raise ValueError(f"max_length is {self.max_length}; it must be at least 8 tokens")
        if self.device not in DEVICES:
            raise ValueError(f"device is {self.device!r}; it must be one of {DEVICES}")


@dataclass
class PairEval:
    """The objective and DPO statistics over a set of pairs (means over pairs).

    loss: the training objective (DPO + sft_weight x NLL); dpo_loss: the DPO term alone;
    margin: beta x (chosen log-ratio - rejected log-ratio), TRL's rewards/margins;
    accuracy: share of pairs whose chosen reward beats the rejected one.
    """

    loss: float
    dpo_loss: float
    margin: float
    accuracy: float
    chosen_reward: float
    rejected_reward: float
    chosen_logps: float
    rejected_logps: float


@dataclass
class DPOReport:
    """What a run did: steps, whether it was stopped early, and before / after statistics
    (`after` is None when a second Ctrl-C interrupted training)."""

    pairs: int
    steps: int
    max_steps: int
    stopped: bool
    seconds: float
    before: PairEval
    after: PairEval | None
    losses: list[float] = field(default_factory=list)


# --- the pairs ------------------------------------------------------------------------------


def read_pairs(path: str | Path) -> list[dict[str, Any]]:
    """Preference records from a JSONL file in PreferencePair.to_json() form, checked.

    Each line needs "prompt" (a list of {"role", "content"} messages or a string) and
    "chosen" / "rejected" (a list holding one assistant message, or a string). Raises
    FileNotFoundError / ValueError naming the file and line.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pairs file {path} does not exist: write one with "
                                "`python -m composer pairs export --out pairs.jsonl`")
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as error:
            raise ValueError(f"{path}:{number}: not JSON ({error})") from error
        records.append(check_record(record, f"{path}:{number}"))
    return records


def check_record(record: Any, where: str = "pair") -> dict[str, Any]:
    """The record with prompt / chosen / rejected normalised to chat-message lists.

    ValueError when a field is missing or malformed, or chosen equals rejected (such a pair
    teaches nothing).
    """
    if not isinstance(record, dict):
        raise ValueError(f"{where}: expected a JSON object with prompt, chosen and rejected")
    out = dict(record)
    for key in ("prompt", "chosen", "rejected"):
        if key not in record:
            raise ValueError(f"{where}: missing {key!r} (expected the format of "
                             "`pairs export`: prompt, chosen, rejected)")
        role = "user" if key == "prompt" else "assistant"
        out[key] = _messages(record[key], role, f"{where}: {key}")
    if _reply_text(out["chosen"]) == _reply_text(out["rejected"]):
        raise ValueError(f"{where}: chosen and rejected are the same text")
    return out


def _messages(value: Any, role: str, where: str) -> list[dict[str, str]]:
    if isinstance(value, str):
        return [{"role": role, "content": value}]
    if not isinstance(value, list) or not value:
        raise ValueError(f"{where} must be a string or a non-empty list of messages")
    for message in value:
        if not (isinstance(message, dict) and isinstance(message.get("role"), str)
                and isinstance(message.get("content"), str)):
            raise ValueError(f"{where}: every message needs text 'role' and 'content'")
    return [{"role": m["role"], "content": m["content"]} for m in value]


def _reply_text(messages: list[dict[str, str]]) -> str:
    return "".join(message["content"] for message in messages)


def training_rows(records: Sequence[dict[str, Any]], tokenizer: Any) -> list[dict[str, Any]]:
    """Rows for DPOTrainer: conversational prompt / chosen / rejected when the tokenizer has
    a chat template; otherwise plain text rendered as models/lm.py TransformersLM.render does
    ("role: content" lines, then "assistant: "), so training and writing see the same text."""
    if getattr(tokenizer, "chat_template", None):
        return [{"prompt": r["prompt"], "chosen": r["chosen"], "rejected": r["rejected"]}
                for r in records]
    rows = []
    for record in records:
        lines = "".join(f"{m['role']}: {m['content']}\n" for m in record["prompt"])
        rows.append({"prompt": f"{lines}assistant: ", "chosen": _reply_text(record["chosen"]),
                     "rejected": _reply_text(record["rejected"])})
    return rows


# --- the model ------------------------------------------------------------------------------


def resolve_model_source(source: str, cache_dir: str | Path | None) -> tuple[str, str]:
    """(folder or hub id to load, base model name to record) for a --model value.

    "embedded" is the converted SmolLM2 folder in the cache (models/embedded.py; converted
    from the GGUF on first use), recorded as "embedded".
    """
    source = str(source).strip()
    if source in ("", "embedded"):
        from models.embedded import ensure_converted

        if cache_dir is None:
            raise ValueError("the embedded model needs a cache directory (COMPOSER_HOME)")
        return str(ensure_converted(Path(cache_dir))), "embedded"
    return source, source


def load_writer(source: str, cache_dir: str | Path | None = None,
                device: str = "cpu") -> tuple[Any, Any, str]:
    """(float32 causal LM, tokenizer, base model name) for training.

    `source`: "embedded", a hub id or a local folder. FileNotFoundError for a missing folder,
    RuntimeError when the model cannot be loaded.
    """
    from composer.train_plora import load_language_model

    where, base_name = resolve_model_source(source, cache_dir)
    model, tokenizer = load_language_model(where, device=device)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer, base_name


def lora_config(model: Any, settings: DPOSettings) -> Any:
    """peft LoraConfig over the settings' target projections that exist in `model`.

    ValueError when the model has none of them (say which linear layers it has instead).
    """
    from peft import LoraConfig
    from torch import nn

    names = {name.rsplit(".", 1)[-1] for name, module in model.named_modules()
             if isinstance(module, nn.Linear)}
    targets = [name for name in settings.target_modules if name in names]
    if not targets:
        raise ValueError(f"the model has none of the projections {settings.target_modules}; "
                         f"its linear layers are named {sorted(names)[:12]}")
    return LoraConfig(r=settings.rank, lora_alpha=settings.alpha,
                      lora_dropout=settings.dropout, target_modules=targets,
                      bias="none", task_type="CAUSAL_LM")


# --- training -------------------------------------------------------------------------------


def _callback(progress: Progress | None, stop: threading.Event | None,
              losses: list[float]) -> Any:
    """A TrainerCallback: reports each step's loss and stops after the step when `stop` is
    set (the first Ctrl-C)."""
    from transformers import TrainerCallback

    class StepReporter(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                losses.append(float(logs["loss"]))
                if progress is not None:
                    progress(state.global_step, state.max_steps, float(logs["loss"]))
            return self.on_step_end(args, state, control)

        def on_step_end(self, args, state, control, **kwargs):
            if stop is not None and stop.is_set():
                control.should_training_stop = True
            return control

    return StepReporter()


def build_trainer(model: Any, tokenizer: Any, records: Sequence[dict[str, Any]],
                  settings: DPOSettings, work_dir: str | Path, callbacks: list | None = None
                  ) -> Any:
    """A DPOTrainer over fresh LoRA adapters of `model` (not yet trained).

    The same pairs are the training set and the evaluation set (evaluate() before and after
    training measures what the run changed on them). No checkpoints, no logging services.
    """
    from datasets import Dataset
    from datasets.utils.logging import disable_progress_bar
    from transformers.trainer_callback import PrinterCallback, ProgressCallback
    from trl import DPOConfig, DPOTrainer

    disable_progress_bar()  # tokenizing a few pairs needs no bar next to the step bar
    rows = training_rows(records, tokenizer)
    dataset = Dataset.from_list(rows)
    use_cpu = settings.device == "cpu"
    if settings.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise ValueError("device is 'cuda' but torch sees no GPU: use --device cpu")
    weights = [1.0] + ([settings.sft_weight] if settings.sft_weight > 0 else [])
    config = DPOConfig(
        output_dir=str(work_dir), beta=settings.beta,
        loss_type=["sigmoid", "sft"][:len(weights)], loss_weights=weights,
        learning_rate=settings.lr, num_train_epochs=settings.epochs,
        max_steps=settings.steps or -1, lr_scheduler_type=settings.scheduler,
        per_device_train_batch_size=settings.batch_size,
        per_device_eval_batch_size=settings.batch_size,
        max_length=settings.max_length, seed=settings.seed, data_seed=settings.seed,
        use_cpu=use_cpu, bf16=False, fp16=False, activation_checkpointing=False,
        logging_steps=1, save_strategy="no",
        eval_strategy="no", report_to="none", disable_tqdm=True, dataloader_num_workers=0,
        remove_unused_columns=False,
    )
    trainer = DPOTrainer(model=model, args=config, train_dataset=dataset, eval_dataset=dataset,
                         processing_class=tokenizer, peft_config=lora_config(model, settings),
                         callbacks=callbacks or [])
    for quiet in (PrinterCallback, ProgressCallback):
        trainer.remove_callback(quiet)
    return trainer


def evaluate_pairs(trainer: Any) -> PairEval:
    """Objective, DPO term and reward statistics on the trainer's pairs (no gradients).

    Runs TRL's own evaluation twice: with the training objective, then with the DPO term
    alone (the SFT term's weight set to 0), so before and after are measured identically.
    """
    metrics = trainer.evaluate()
    types, weights = list(trainer.loss_types), list(trainer.loss_weights)
    try:
        trainer.loss_types, trainer.loss_weights = ["sigmoid"], [1.0]
        dpo_only = trainer.evaluate()
    finally:
        trainer.loss_types, trainer.loss_weights = types, weights
    return PairEval(loss=metrics["eval_loss"], dpo_loss=dpo_only["eval_loss"],
                    margin=metrics["eval_rewards/margins"],
                    accuracy=metrics["eval_rewards/accuracies"],
                    chosen_reward=metrics["eval_rewards/chosen"],
                    rejected_reward=metrics["eval_rewards/rejected"],
                    chosen_logps=metrics["eval_logps/chosen"],
                    rejected_logps=metrics["eval_logps/rejected"])


def train_dpo(model: Any, tokenizer: Any, records: Sequence[dict[str, Any]],
              settings: DPOSettings, *, progress: Progress | None = None,
              stop: threading.Event | None = None) -> tuple[Any, DPOReport]:
    """Train LoRA adapters of `model` on preference records; (peft model, report).

    Evaluates the pairs before step 0 and after the last step. `stop` set (first Ctrl-C)
    ends training after the current step; a KeyboardInterrupt (second Ctrl-C) ends it at
    once. Either way the adapters trained so far are returned, for save_dpo.
    """
    settings.check()
    if not records:
        raise ValueError("no preference pairs to train on: edit or rewrite some model "
                         "paragraphs in the app first, or give --pairs FILE")
    losses: list[float] = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="dpo-work-") as work_dir:
        trainer = build_trainer(model, tokenizer, records, settings, work_dir,
                                callbacks=[_callback(progress, stop, losses)])
        before = evaluate_pairs(trainer)
        stopped, interrupted = False, False
        try:
            trainer.train()
        except KeyboardInterrupt:
            stopped = interrupted = True
        stopped = stopped or bool(stop is not None and stop.is_set())
        after = None if interrupted else evaluate_pairs(trainer)
        peft_model = trainer.model
        peft_model.eval()
        report = DPOReport(pairs=len(records), steps=int(trainer.state.global_step),
                           max_steps=int(trainer.state.max_steps), stopped=stopped,
                           seconds=time.perf_counter() - started, before=before, after=after,
                           losses=losses)
    return peft_model, report


def save_dpo(folder: str | Path, peft_model: Any, settings: DPOSettings, report: DPOReport,
             *, base_model: str, extra: dict | None = None) -> Path:
    """Write the adapters (peft save_pretrained) and dpo.json to `folder`; returns it.

    dpo.json records the base model's name and fingerprint (models/writer_adapter.py
    compares them before loading), the settings and the before / after statistics.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    peft_model.save_pretrained(str(folder))
    base = peft_model.get_base_model()
    record = {
        "format": DPO_FORMAT, "base_model": base_model, "base": base_description(base),
        "adapters": "LoRA on text tokens (q/k/v/o/gate/up/down projections)",
        "settings": {**dataclasses.asdict(settings),
                     "target_modules": list(settings.target_modules)},
        **_report_json(report), **(extra or {}),
    }
    write_record(folder, DPO_RECORD, record)
    return folder


def _report_json(report: DPOReport) -> dict[str, Any]:
    data = dataclasses.asdict(report)
    data["seconds"] = round(report.seconds, 3)
    return data


def summary(report: DPOReport) -> str:
    """One line: steps, and loss / reward margin before -> after."""
    before, after = report.before, report.after
    verb = "Stopped after" if report.stopped else "Trained"
    if after is None:
        return (f"{verb} {report.steps} steps on {report.pairs} pairs (interrupted: no "
                f"after-training evaluation); loss before {before.loss:.4f}, reward margin "
                f"before {before.margin:+.4f}")
    return (f"{verb} {report.steps}/{report.max_steps} steps on {report.pairs} pairs: loss "
            f"{before.loss:.4f} -> {after.loss:.4f} (DPO term {before.dpo_loss:.4f} -> "
            f"{after.dpo_loss:.4f}), reward margin {before.margin:+.4f} -> "
            f"{after.margin:+.4f}, accuracy {before.accuracy:.2f} -> {after.accuracy:.2f}")
