"""The command line: compose, export, list, show and library commands.

    python -m composer compose "TITLE or instruction" --words 800 --images auto --out a.md
    python -m composer export ID --format html --out a.html
    python -m composer list
    python -m composer library add photos/ --license CC0
    python -m composer library caption --model Salesforce/blip-image-captioning-large
    python -m composer train-plora --model LM --vision openai/clip-vit-large-patch14-336 \
        --out adapters/ --steps 300
    python -m composer pairs export --out pairs.jsonl
    python -m composer train-dpo --pairs pairs.jsonl --out writer-dpo/ --epochs 2
    python -m composer loop report
    python -m composer loop sample --size 32 --out batch.jsonl
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from composer import export as exporting
from composer.cli_eval import add_eval_parser, cmd_eval
from composer.config import DECODINGS, Settings
from composer.languages import length_text
from composer.progress import TerminalProgress
from composer.services import Services
from composer.types import ComposeRequest, ComposerError, GenerationConfig, InputError

EXIT_INPUT = 2
EXIT_INTERRUPTED = 130


def _images_value(text: str) -> int | None:
    if text.lower() in ("auto", "automatic"):
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--images must be 'auto' or a number, got {text!r}")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser; every subcommand's options are declared here."""
    parser = argparse.ArgumentParser(prog="python -m composer",
                                     description="Compose illustrated long articles.")
    parser.add_argument("--home", help="data directory (default: $COMPOSER_HOME or per-user)")
    parser.add_argument("--database-url", help="SQLAlchemy URL (default: $DATABASE_URL or "
                        "sqlite in the data directory)")
    parser.add_argument("--model", help="'embedded', a model id or path, or module:factory")
    commands = parser.add_subparsers(dest="command", required=True)

    compose = commands.add_parser("compose", help="write an illustrated article")
    compose.add_argument("instruction", help="a title or an instruction ('-' reads stdin)")
    compose.add_argument("--words", type=int, default=800, help="target length (default 800)")
    compose.add_argument("--images", type=_images_value, default=None,
                         help="'auto' (default) or a number 1-15")
    compose.add_argument("--lang", default="en", help="en or zh")
    compose.add_argument("--text-only", action="store_true", help="no images")
    compose.add_argument("--material", type=Path, help="a text file of reference material")
    compose.add_argument("--reference-image", type=Path, action="append", default=[],
                         help="a reference image (repeat, up to 10): described to the writer "
                              "by its library caption and visible text")
    compose.add_argument("--selection", default="score", choices=("score", "model"),
                         help="pick images by retrieval score or let the model choose A-D")
    compose.add_argument("--image-license", help="only library images with exactly this "
                         "license (see `library list`), e.g. 'CC0 1.0'")
    compose.add_argument("--image-source", help="only library images with exactly this source")
    compose.add_argument("--seed", type=int, default=0)
    compose.add_argument("--sample", action="store_true", help="sample instead of greedy")
    compose.add_argument("--temperature", type=float, default=0.7)
    compose.add_argument("--top-p", type=float, default=0.8)
    compose.add_argument("--top-k", type=int, default=40)
    compose.add_argument("--repetition-penalty", type=float, default=1.1)
    compose.add_argument("--no-repeat-ngram", type=int, default=0)
    compose.add_argument("--beams", type=int, default=1)
    compose.add_argument("--candidates", type=int, default=GenerationConfig.candidates,
                         help="drafts of each paragraph, checked and the best kept "
                         "(decoded in one batch by a local model; default %(default)s)")
    compose.add_argument("--decoding", choices=DECODINGS, default="default",
                         help="'opera': OPERA beam search against over-trust (local "
                         "transformers writers; slower)")
    compose.add_argument("--max-tokens", type=int, default=1024, help="per model call")
    compose.add_argument("--out", type=Path, help="write the article here (.md, .html or .zip)")
    compose.add_argument("--quiet", action="store_true", help="no streamed text or bars")

    exporter = commands.add_parser("export", help="export a saved document")
    exporter.add_argument("id")
    exporter.add_argument("--format", choices=exporting.FORMATS, default="md")
    exporter.add_argument("--out", type=Path, help="file to write (default: stdout)")

    lister = commands.add_parser("list", help="list saved documents")
    lister.add_argument("--limit", type=int, default=50)

    library = commands.add_parser("library", help="manage the image library")
    actions = library.add_subparsers(dest="action", required=True)
    add = actions.add_parser("add", help="add image files or folders")
    add.add_argument("paths", nargs="+", type=Path)
    add.add_argument("--caption", help="caption for every file (else sidecar .txt/json/csv)")
    add.add_argument("--source", default="")
    add.add_argument("--license", default="")
    add.add_argument("--attribution", default="")
    add.add_argument("--keep-near-duplicates", action="store_true",
                     help="add images that look like one already in the library")
    listing = actions.add_parser("list", help="list library images")
    listing.add_argument("--search", help="only captions containing this text")
    listing.add_argument("--source", help="only images with exactly this source")
    listing.add_argument("--license", help="only images with exactly this license")
    listing.add_argument("--limit", type=int, default=None)
    actions.add_parser("seed", help="add the bundled default photos (done on first run)")
    search = actions.add_parser("search", help="the library's best images for a description, "
                                "ranked with scores, as the composer finds them")
    search.add_argument("query", help="what the picture should show")
    search.add_argument("--k", type=int, default=10, help="how many results (default 10)")
    search.add_argument("--source", help="only images with exactly this source")
    search.add_argument("--license", help="only images with exactly this license")
    search.add_argument("--json", action="store_true", help="print a JSON list (for scripts)")
    actions.add_parser("index", help="finish indexing (caption vectors, visible text) that "
                       "an interrupted `library add` left")
    generate = actions.add_parser("generate", help="generate a picture for a caption with "
                                  "$COMPOSER_IMAGE_GENERATOR and add it to the library")
    generate.add_argument("caption", help="what the picture shows (also its caption)")
    generate.add_argument("--seed", type=int, default=0)
    caption = actions.add_parser("caption", help="caption uncaptioned images with a model")
    caption.add_argument("--model", dest="caption_model",
                         help="image-to-text model id or folder, or module:factory "
                         "(default: $COMPOSER_CAPTIONER)")
    caption.add_argument("--recaption", action="store_true",
                         help="also replace captions written by another captioning model")

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
    _add_dpo_commands(commands)
    add_eval_parser(commands)
    return parser


def _add_dpo_commands(commands: argparse._SubParsersAction) -> None:
    """`pairs`, `train-dpo` and `loop`: preference pairs, DPO training, the data loop."""
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


def request_from_args(args: argparse.Namespace) -> ComposeRequest:
    """A ComposeRequest from parsed compose arguments (limits are checked by the composer)."""
    instruction = sys.stdin.read() if args.instruction == "-" else args.instruction
    material = ""
    if args.material:
        if not args.material.is_file():
            raise InputError(f"material file {args.material} does not exist")
        material = args.material.read_text(encoding="utf-8", errors="replace")
    generation = GenerationConfig(
        max_new_tokens=args.max_tokens, do_sample=args.sample, temperature=args.temperature,
        top_p=args.top_p, top_k=args.top_k, repetition_penalty=args.repetition_penalty,
        no_repeat_ngram_size=args.no_repeat_ngram, num_beams=args.beams, seed=args.seed,
        candidates=args.candidates, decoding=args.decoding,
    )
    return ComposeRequest(
        instruction=instruction, language=args.lang, target_words=args.words,
        images=args.images, text_only=args.text_only, seed=args.seed,
        selection=args.selection, material=material, generation=generation,
        image_license=args.image_license or "", image_source=args.image_source or "",
    )


def cmd_compose(services: Services, args: argparse.Namespace) -> int:
    """Compose, streaming text and progress; save; export to --out if given."""
    request = request_from_args(args)
    services.check_language(request.language)  # before any model loads
    if args.reference_image:
        from composer.references import apply_references, reference_note

        material, images = apply_references(services, request.material, args.reference_image)
        request = dataclasses.replace(request, material=material, reference_images=images)
        if not args.quiet:
            print(reference_note(services.settings), file=sys.stderr)
    fmt = _format_for(args.out) if args.out else None
    composer_ = services.composer(with_images=not request.text_only)
    show = TerminalProgress(stream_text=not args.quiet, language=request.language)
    document_id = None
    events = composer_.compose(request)
    try:
        for event in events:
            document_id = event.document_id or document_id
            if not args.quiet or event.stage == "warning":
                show(event)
    finally:
        events.close()  # on Ctrl-C this runs the pipeline's save-and-mark-interrupted path
    doc = services.documents.get(document_id)
    if args.out:
        exporting.export(doc, services.images, fmt, args.out)
    if args.quiet:
        print(doc.id)
    else:
        where = f", written to {args.out}" if args.out else ""
        print(f"\nSaved document {doc.id} ({doc.status}, "
              f"{length_text(doc.word_count, doc.language)}, "
              f"{len(doc.image_blocks)} images){where}.")
    return 0 if doc.status == "done" else EXIT_INTERRUPTED


def _format_for(path: Path) -> str:
    suffix = path.suffix.lower().lstrip(".")
    fmt = {"markdown": "md", "htm": "html"}.get(suffix, suffix)
    if fmt not in exporting.FORMATS:
        raise InputError(f"--out {path}: unknown extension; use .md, .html or .zip")
    return fmt


def cmd_export(services: Services, args: argparse.Namespace) -> int:
    """Export a saved document as md, html or zip, to a file or stdout."""
    doc = services.documents.get(args.id)
    if args.format == "zip" and args.out is None:
        raise InputError("a zip export needs --out FILE.zip")
    result = exporting.export(doc, services.images, args.format, args.out)
    if args.out is None:
        sys.stdout.write(result if isinstance(result, str) else "")
    else:
        print(f"Wrote {args.out}")
    return 0


def cmd_list(services: Services, args: argparse.Namespace) -> int:
    """One line per document, newest first."""
    rows = services.documents.list(limit=args.limit)
    if not rows:
        print("No documents yet. Try: python -m composer compose \"A title\"")
    for row in rows:
        unit = "字" if row.language == "zh" else "w"  # Chinese length is in characters
        print(f"{row.id}  {row.updated_at[:16]}  {row.status:<11}  {row.words:>5}{unit}  "
              f"{row.title}")
    return 0


def cmd_library(services: Services, args: argparse.Namespace) -> int:
    """Add, list, search, index or seed library images; indexing shows a bar per stage."""
    from composer.cli_library import (
        StageBars,
        cmd_library_add,
        cmd_library_index,
        cmd_library_search,
    )
    from composer.library import seed_default_library

    bars = StageBars()  # a stage's bar ends at its total
    services.index_progress = bars  # the retriever indexes what is missing when first used
    if args.action == "seed":
        added = seed_default_library(services.images, services.retriever)
        print(f"Default library: {added} new images ({services.images.count()} in all).")
        return 0
    if args.action == "caption":
        return cmd_caption(services, args)
    if args.action == "generate":
        return cmd_generate(services, args)
    if args.action == "list":
        images = services.images.list(limit=args.limit, search=args.search, source=args.source,
                                      license=args.license)
        for image in images:
            print(f"{image.id[:12]}  {image.width}x{image.height}  {image.license or '-':<12} "
                  f"{image.caption[:70] or '(no caption)'}")
        if not images:
            print("No images match.", file=sys.stderr)
        return 0
    if args.action == "index":
        return cmd_library_index(services, args, bars)
    if args.action == "search":
        return cmd_library_search(services, args)
    return cmd_library_add(services, args, bars)


def cmd_generate(services: Services, args: argparse.Namespace) -> int:
    """Generate a picture for a caption and add it to the shared library, with a step bar."""
    from composer.generate_image import generate_into_library
    from models.image_generator import GenerationCancelled

    generator = services.generator
    if generator is None:
        print("No image generator is set: set COMPOSER_IMAGE_GENERATOR to a diffusers model id, "
              "a local folder or module:factory.", file=sys.stderr)
        return EXIT_INPUT
    stop = threading.Event()
    with _bar("step") as bar, _first_interrupt_stops(stop, "\nStopping at the next step ..."):
        try:
            image = generate_into_library(
                generator, services.images, args.caption, owner=None, seed=args.seed,
                cancel=stop, progress=lambda step, total: bar(step, total, "denoising"))
        except GenerationCancelled:
            print("Interrupted: no picture was added.", file=sys.stderr)
            return EXIT_INTERRUPTED
    services.retriever.index()  # so that compose and search find it by its caption
    print(f"{image.id[:12]}  {image.width}x{image.height}  {image.license}  {image.caption[:70]}")
    return 0


def cmd_caption(services: Services, args: argparse.Namespace) -> int:
    """Caption uncaptioned library images with a model, with a progress bar on stderr.

    Each caption is saved as soon as it is written: the first Ctrl-C stops after the current
    image, a second one stops at once; either way a later run continues where this one ended.
    """
    from composer.captioning import NO_CAPTIONER_MESSAGE, caption_library, summary
    from models.captioner import load_captioner

    spec = args.caption_model or getattr(services.settings, "captioner", "")
    try:
        captioner = load_captioner(spec, device=services.settings.device)
    except (RuntimeError, TypeError, ValueError) as error:
        raise ComposerError(str(error)) from error
    if captioner is None:
        print(NO_CAPTIONER_MESSAGE, file=sys.stderr)
        return EXIT_INPUT
    retriever = services.retriever  # new captions are embedded at the end of the job
    stop = threading.Event()
    with _bar() as progress, _first_interrupt_stops(stop):
        try:
            report = caption_library(services.images, captioner, retriever=retriever,
                                     progress=progress, stop=stop,
                                     recaption_model_captions=args.recaption)
        except KeyboardInterrupt:
            print("\nInterrupted: the captions written so far are saved; run "
                  "`library caption` again to continue.", file=sys.stderr)
            return EXIT_INTERRUPTED
    print(summary(report))
    for image_id, message in report.failed:
        print(f"  {image_id[:12]}: {message}", file=sys.stderr)
    if report.stopped:
        return EXIT_INTERRUPTED
    return 0 if not report.failed else EXIT_INPUT


@contextlib.contextmanager
def _bar(unit: str = "image") -> Iterator[Callable[[int, int, str], None]]:
    """A tqdm bar on stderr, driven by caption_library's progress(done, total, message)."""
    from tqdm import tqdm

    bar = tqdm(total=0, unit=unit, file=sys.stderr, dynamic_ncols=True)

    def progress(done: int, total: int, message: str) -> None:
        bar.total = total
        bar.n = done
        bar.set_postfix_str(message[:50], refresh=False)
        bar.refresh()

    try:
        yield progress
    finally:
        bar.close()


CAPTION_STOP_NOTICE = ("\nStopping after the current image (Ctrl-C again to stop now); the "
                       "captions written so far are kept.")
TRAINING_STOP_NOTICE = ("\nStopping after the current step (Ctrl-C again to stop now); what "
                        "was trained so far will be saved.")


@contextlib.contextmanager
def _first_interrupt_stops(stop: threading.Event, notice: str = CAPTION_STOP_NOTICE
                           ) -> Iterator[None]:
    """While inside: the first Ctrl-C sets `stop` (the job ends after its current unit of
    work) and prints `notice`; a second raises KeyboardInterrupt. Outside the main thread
    signals cannot be caught."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_interrupt(signum: int, frame: object) -> None:
        if stop.is_set():
            raise KeyboardInterrupt(f"signal {signum}")
        stop.set()
        print(notice, file=sys.stderr)

    previous = signal.signal(signal.SIGINT, on_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def cmd_train_plora(services: Services, args: argparse.Namespace) -> int:
    """Train PLoRA adapters + projector on captioned library images; save to --out.

    Missing model folders or a library without captioned images exit 2. The first Ctrl-C
    stops after the current step, a second one at once; either way what was trained so far
    is saved (exit 130).
    """
    import torch

    from composer import train_plora as training
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
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
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
    with _step_bar(config.steps) as progress, \
            _first_interrupt_stops(stop, TRAINING_STOP_NOTICE):
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
    from composer.train_plora import VISION_ADAPTER

    found = path / VISION_ADAPTER if path.is_dir() else path
    if not found.is_file():
        raise FileNotFoundError(f"--resume-projector {path}: no {VISION_ADAPTER} there")
    return found


@contextlib.contextmanager
def _step_bar(total: int = 0) -> Iterator[Callable[[int, int, float], None]]:
    """A tqdm bar on stderr showing training steps and the running loss; the trainer's
    progress(done, steps, loss) sets the total when it is not known up front."""
    from tqdm import tqdm

    bar = tqdm(total=total, unit="step", file=sys.stderr, dynamic_ncols=True)

    def progress(done: int, steps: int, loss: float) -> None:
        bar.total = steps or bar.total
        bar.n = done
        bar.set_postfix_str(f"loss {loss:.4f}", refresh=False)
        bar.refresh()

    try:
        yield progress
    finally:
        bar.close()


def cmd_pairs(services: Services, args: argparse.Namespace) -> int:
    """`pairs export --out FILE` (JSONL, PreferencePair.to_json per line) or `pairs count`."""
    from composer.loop import pair_repository

    repo = pair_repository(services)
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
    from composer.loop import pair_repository
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
            pair_repository(services).export_jsonl(pairs_path)
        records = dpo.read_pairs(pairs_path)
    except (FileNotFoundError, ValueError) as error:
        raise InputError(str(error)) from error
    if not records:
        raise InputError(f"{pairs_path} holds no preference pairs: they are stored when "
                         "someone rewrites or replaces a model paragraph in the app")
    print(f"Loading {source} ...", file=sys.stderr)
    from models.lm import resolve_device

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
    with _step_bar() as progress, _first_interrupt_stops(stop, TRAINING_STOP_NOTICE):
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
    pairs = list(loop.pair_repository(services).list())
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


COMMANDS = {"compose": cmd_compose, "export": cmd_export, "list": cmd_list,
            "library": cmd_library, "train-plora": cmd_train_plora, "pairs": cmd_pairs,
            "train-dpo": cmd_train_dpo, "loop": cmd_loop, "eval": cmd_eval}
# What Ctrl-C or SIGTERM kept, per command (commands that know more catch it themselves).
INTERRUPTED = {
    "compose": "\nInterrupted: the text written so far is saved (status: interrupted).",
    "library": ("\nInterrupted: the images added and indexed so far are saved; run "
                "`python -m composer library index` to finish indexing."),
}


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; errors print one clear line and set the exit status."""
    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        settings = Settings.from_env(home=args.home, database_url=args.database_url,
                                     model=args.model)
        return COMMANDS[args.command](Services(settings), args)
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_INPUT
    except ComposerError as error:  # StorageError included: read-only, disk full, --out
        print(f"error: {error}", file=sys.stderr)
        return 1
    except OSError as error:  # a file no layer translated: still one line, not a traceback
        from storage.faults import os_error_text

        print(f"error: {os_error_text(error)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(INTERRUPTED.get(args.command, "\nInterrupted."), file=sys.stderr)
        return EXIT_INTERRUPTED
