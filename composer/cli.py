"""The command line: compose, export and list here; library, training and eval commands in
composer/cli_library.py, composer/cli_training.py and composer/cli_eval.py.

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
import dataclasses
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from composer import export as exporting
from composer.cli_common import EXIT_INPUT, EXIT_INTERRUPTED, INTERRUPTED
from composer.cli_eval import add_eval_parser, cmd_eval
from composer.cli_library import add_library_parser, cmd_library
from composer.cli_training import (
    add_training_parsers,
    cmd_loop,
    cmd_pairs,
    cmd_train_dpo,
    cmd_train_plora,
)
from composer.config import DECODINGS, Settings
from composer.languages import length_text
from composer.progress import TerminalProgress
from composer.services import Services
from composer.types import ComposeRequest, ComposerError, GenerationConfig, InputError


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

    worker = commands.add_parser("worker", help="run queued compositions (needs "
                                 "COMPOSER_REDIS_URL; see docs/deployment.md)")
    worker.add_argument("--threads", type=int, default=None,
                        help="compositions at once (default: COMPOSER_MODEL_CONCURRENCY)")

    exporter = commands.add_parser("export", help="export a saved document")
    exporter.add_argument("id")
    exporter.add_argument("--format", choices=exporting.FORMATS, default="md")
    exporter.add_argument("--out", type=Path, help="file to write (default: stdout)")

    lister = commands.add_parser("list", help="list saved documents")
    lister.add_argument("--limit", type=int, default=50)

    add_library_parser(commands)
    add_training_parsers(commands)
    add_eval_parser(commands)
    return parser


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


def cmd_worker(services: Services, args: argparse.Namespace) -> int:
    """Run queued compositions until stopped (composer/worker.py)."""
    from composer.worker import serve

    threads = args.threads or services.settings.model_concurrency
    if threads < 1:
        raise InputError(f"--threads {threads}: give at least 1")
    return serve(services, threads)


COMMANDS = {"compose": cmd_compose, "worker": cmd_worker, "export": cmd_export, "list": cmd_list,
            "library": cmd_library, "train-plora": cmd_train_plora, "pairs": cmd_pairs,
            "train-dpo": cmd_train_dpo, "loop": cmd_loop, "eval": cmd_eval}


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
