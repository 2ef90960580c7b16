"""Training and the data loop on the command line: train-plora, pairs, train-dpo, loop.

    python -m composer train-plora --model LM --vision openai/clip-vit-large-patch14-336 \
        --out adapters/ --steps 300
    python -m composer pairs export --out pairs.jsonl
    python -m composer train-dpo --pairs pairs.jsonl --out writer-dpo/ --epochs 2
    python -m composer loop report
    python -m composer loop sample --size 32 --out batch.jsonl

The first Ctrl-C of a training run stops after the current step, a second one at once;
either way what was trained so far is saved (exit 130).
"""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path

from composer.cli_common import (
    EXIT_INTERRUPTED,
    TRAINING_STOP_NOTICE,
    first_interrupt_stops,
    step_bar,
)
from composer.services import Services
from composer.types import ComposerError, InputError


def add_training_parsers(commands: argparse._SubParsersAction) -> None:
    """`train-plora`, `pairs`, `train-dpo` and `loop`: adapters, preference pairs, DPO
    training, the data loop."""
    trainer = commands.add_parser(
        "train-plora", help="train Partial-LoRA adapters and the image projector on the "
        "library's captioned images")
    trainer.add_argument("--model", dest="lm_model", required=True,
                         help="language model id or folder (frozen)")
    trainer.add_argument("--vision", required=True,
                         help="CLIP or SigLIP vision model id or folder (frozen)")
    trainer.add_argument("--out", type=Path, required=True, help="checkpoint folder to write")
    trainer.add_argument("--steps", type=int, default=200)
    trainer.add_argument("--batch-size", type=int, default=4)
    trainer.add_argument("--lr", type=float, default=2e-4)
    trainer.add_argument("--rank", type=int, default=16)
    trainer.add_argument("--alpha", type=float, default=32)
    trainer.add_argument("--image-size", type=int, default=224,
                         help="pixels per tile side the tower runs at (default 224)")
    trainer.add_argument("--max-tiles", type=int, default=4,
                         help="high-resolution tiles per image (0: global view only)")
    trainer.add_argument("--seed", type=int, default=0)
    trainer.add_argument("--limit", type=int, default=None,
                         help="train on at most this many captioned images")
    trainer.add_argument("--resume-projector", type=Path,
                         help="start the projector from a checkpoint folder or a "
                         "vision_adapter.safetensors file")
    trainer.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                         help="where to train (auto: cuda when available)")
    pairs = commands.add_parser("pairs", help="preference pairs from users' edits")
    pair_actions = pairs.add_subparsers(dest="action", required=True)
    export_pairs = pair_actions.add_parser("export", help="write every pair as JSONL")
    export_pairs.add_argument("--out", type=Path, required=True, help="the .jsonl file")
    pair_actions.add_parser("count", help="how many pairs are stored")

    dpo = commands.add_parser("train-dpo", help="train LoRA adapters of the writer on the "
                              "preference pairs (DPO + SFT, as HA-DPO)")
    dpo.add_argument("--pairs", type=Path, help="pairs JSONL (default: export the database's "
                     "pairs to OUT/pairs.jsonl first)")
    dpo.add_argument("--out", type=Path, required=True, help="adapter folder to write")
    dpo.add_argument("--model", dest="dpo_model", help="writer to adapt: 'embedded', a model "
                     "id or folder (default: --model / $COMPOSER_MODEL)")
    dpo.add_argument("--epochs", type=float, default=1.0)
    dpo.add_argument("--steps", type=int, default=None, help="optimiser steps (overrides "
                     "--epochs)")
    dpo.add_argument("--lr", type=float, default=1e-4)
    dpo.add_argument("--beta", type=float, default=0.1, help="DPO beta (HA-DPO: 0.1)")
    dpo.add_argument("--sft-weight", type=float, default=0.5,
                     help="weight of the NLL on the chosen text (HA-DPO: 0.5; 0 = DPO only)")
    dpo.add_argument("--rank", type=int, default=16)
    dpo.add_argument("--alpha", type=float, default=32)
    dpo.add_argument("--dropout", type=float, default=0.05)
    dpo.add_argument("--batch-size", type=int, default=2)
    dpo.add_argument("--max-length", type=int, default=512, help="tokens of prompt + reply")
    dpo.add_argument("--seed", type=int, default=0)
    dpo.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))

    loop = commands.add_parser("loop", help="score paragraph kinds and edit operations by "
                               "likes and rewrites; draw the next training batch")
    loop_actions = loop.add_subparsers(dest="action", required=True)
    report = loop_actions.add_parser("report", help="like rate, rewrite rate and score")
    report.add_argument("--json", action="store_true", help="print JSON")
    sample = loop_actions.add_parser("sample", help="draw preference pairs, weak kinds first")
    sample.add_argument("--size", type=int, required=True)
    sample.add_argument("--out", type=Path, required=True, help="the .jsonl file")
    sample.add_argument("--seed", type=int, default=0)


def cmd_train_plora(services: Services, args: argparse.Namespace) -> int:
    """Train PLoRA adapters + projector on captioned library images; save to --out.

    Missing model folders or a library without captioned images exit 2. The first Ctrl-C
    stops after the current step, a second one at once; either way what was trained so far
    is saved (exit 130).
    """
    from composer import train_plora as training
    from models.devices import resolve_device
    from models.vision import ImageEncoder

    try:
        lm_source = training.check_source(args.lm_model, "language model")
        vision_source = training.check_source(args.vision, "vision model")
        resume = _adapter_file(args.resume_projector) if args.resume_projector else None
        pairs = training.library_pairs(services.images, args.limit)
        config = training.TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                                      rank=args.rank, alpha=args.alpha, seed=args.seed)
        config.check()
    except (FileNotFoundError, ValueError) as error:
        raise InputError(str(error)) from error
    if not pairs:
        raise InputError("the library has no captioned images to train on: add images with "
                         "captions (`library add --caption` or sidecar files) or run "
                         "`library caption` first")
    device = resolve_device(args.device)
    print(f"Loading {lm_source} and {vision_source} ...", file=sys.stderr)
    try:
        model, tokenizer = training.load_language_model(lm_source, device=device)
        d_model = model.get_input_embeddings().embedding_dim
        encoder = ImageEncoder.from_pretrained(vision_source, d_model,
                                               image_size=args.image_size,
                                               max_tiles=args.max_tiles, device=device,
                                               tower_dtype="float32", seed=args.seed)
        if resume is not None:
            encoder.load_adapter(resume)
    except ValueError as error:
        raise InputError(str(error)) from error
    except RuntimeError as error:
        raise ComposerError(str(error)) from error
    stop = threading.Event()
    print(f"Training on {len(pairs)} captioned images for {config.steps} steps.",
          file=sys.stderr)
    with step_bar(config.steps) as progress, \
            first_interrupt_stops(stop, TRAINING_STOP_NOTICE):
        report = training.train_plora(model, tokenizer, encoder, pairs, config,
                                      progress=progress, stop=stop)
    training.save_trained(args.out, model, encoder, config, report, base_model=lm_source,
                          vision=vision_source,
                          extra={"args": {key: str(value) if isinstance(value, Path) else value
                                          for key, value in vars(args).items()}})
    final = report.final_loss
    shown = f"{final:.4f}" if final is not None else "-"
    print(f"{'Stopped' if report.stopped else 'Trained'} {report.steps} steps (loss {shown}); "
          f"adapters written to {args.out}.")
    return EXIT_INTERRUPTED if report.stopped else 0


def _adapter_file(path: Path) -> Path:
    """The vision adapter file of --resume-projector (a checkpoint folder or the file)."""
    from models.adapters import VISION_ADAPTER

    found = path / VISION_ADAPTER if path.is_dir() else path
    if not found.is_file():
        raise FileNotFoundError(f"--resume-projector {path}: no {VISION_ADAPTER} there")
    return found


def cmd_pairs(services: Services, args: argparse.Namespace) -> int:
    """`pairs export --out FILE` (JSONL, PreferencePair.to_json per line) or `pairs count`."""
    repo = services.pairs
    if args.action == "count":
        print(repo.count())
        return 0
    count = repo.export_jsonl(args.out)
    print(f"Wrote {count} preference pairs to {args.out}.")
    if not count:
        print("No pairs yet: they are stored when someone rewrites or replaces a model "
              "paragraph in the app.", file=sys.stderr)
    return 0


def cmd_train_dpo(services: Services, args: argparse.Namespace) -> int:
    """Train LoRA adapters of the writer on preference pairs; save them to --out.

    Without --pairs the database's pairs are exported to OUT/pairs.jsonl first. The first
    Ctrl-C stops after the current step, a second one at once; either way what was trained
    so far is saved (exit 130).
    """
    from composer import train_dpo as dpo
    from models.registry import is_plugin

    settings = dpo.DPOSettings(
        epochs=args.epochs, steps=args.steps, lr=args.lr, beta=args.beta,
        sft_weight=args.sft_weight, rank=args.rank, alpha=args.alpha, dropout=args.dropout,
        batch_size=args.batch_size, max_length=args.max_length, seed=args.seed,
        device=args.device)
    source = (args.dpo_model or services.settings.model or "embedded").strip()
    try:
        settings.check()
        if is_plugin(source):
            raise ValueError(f"--model {source!r} is a plugin; train-dpo needs 'embedded', a "
                             "model id or a model folder")
        pairs_path = args.pairs
        if pairs_path is None:
            args.out.mkdir(parents=True, exist_ok=True)
            pairs_path = args.out / "pairs.jsonl"
            services.pairs.export_jsonl(pairs_path)
        records = dpo.read_pairs(pairs_path)
    except (FileNotFoundError, ValueError) as error:
        raise InputError(str(error)) from error
    if not records:
        raise InputError(f"{pairs_path} holds no preference pairs: they are stored when "
                         "someone rewrites or replaces a model paragraph in the app")
    print(f"Loading {source} ...", file=sys.stderr)
    from models.devices import resolve_device

    device = resolve_device(args.device)
    try:
        model, tokenizer, base_name = dpo.load_writer(source, services.settings.cache_dir,
                                                      device=device)
    except (FileNotFoundError, ValueError) as error:
        raise InputError(str(error)) from error
    except RuntimeError as error:
        raise ComposerError(str(error)) from error
    print(f"Training LoRA adapters (text tokens) on {len(records)} pairs.", file=sys.stderr)
    stop = threading.Event()
    with step_bar() as progress, first_interrupt_stops(stop, TRAINING_STOP_NOTICE):
        try:
            peft_model, report = dpo.train_dpo(model, tokenizer, records, settings,
                                               progress=progress, stop=stop)
        except ValueError as error:
            raise InputError(str(error)) from error
    dpo.save_dpo(args.out, peft_model, settings, report, base_model=base_name,
                 extra={"pairs_file": str(pairs_path),
                        "command": "python -m composer " + " ".join(sys.argv[1:])})
    print(dpo.summary(report))
    print(f"Adapters written to {args.out}; use them with COMPOSER_WRITER_ADAPTER={args.out}")
    return EXIT_INTERRUPTED if report.stopped else 0


def cmd_loop(services: Services, args: argparse.Namespace) -> int:
    """`loop report [--json]` or `loop sample --size N --out FILE [--seed S]`."""
    import json

    from composer import loop

    report = loop.report_from_services(services)
    if args.action == "report":
        print(json.dumps(report.to_json(), indent=2) if args.json
              else loop.format_report(report))
        return 0
    pairs = list(services.pairs.list())
    try:
        batch = loop.sample_batch(pairs, report.kind_scores(), args.size, args.seed)
    except ValueError as error:
        raise InputError(str(error)) from error
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", encoding="utf-8") as handle:
        for pair in batch:
            handle.write(json.dumps(pair.to_json(), ensure_ascii=False) + "\n")
    shares = loop.expected_shares(pairs, report.kind_scores())
    counts = {kind: sum(1 for pair in batch if pair.kind == kind) for kind in shares}
    print(f"Wrote {len(batch)} pairs to {args.out}: " + ", ".join(
        f"{kind} {counts[kind]} (weight {shares[kind]:.2f})" for kind in shares))
    return 0

