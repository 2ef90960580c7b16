"""The `library` commands on the command line: add, list, search, index, seed, generate, caption.

Adding many images has two long phases: storing the files (one row each), then indexing
(caption vectors, visible text). Each stage gets its own progress bar on stderr, every file
and every batch is saved as soon as it is done, and an interruption (Ctrl-C, SIGTERM) says
how far the stage got and which command finishes the work.

`library search` ranks the library's images for a description with the composer's own
retriever and prints them with their scores: a table for people, JSON for scripts.
"""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path
from typing import Any, Callable

from composer.cli_common import (
    EXIT_INPUT,
    EXIT_INTERRUPTED,
    INTERRUPTED,
    first_interrupt_stops,
    progress_bar,
)
from composer.library import ADDING_STAGE
from composer.services import Services
from composer.types import ComposerError, InputError

INDEX_COMMAND = "python -m composer library index"


def add_library_parser(commands: argparse._SubParsersAction) -> None:
    """Declare the library subcommand, its actions and their options."""
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


def cmd_library(services: Services, args: argparse.Namespace) -> int:
    """Add, list, search, index or seed library images; indexing shows a bar per stage."""
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
    with progress_bar("step") as bar, \
            first_interrupt_stops(stop, "\nStopping at the next step ..."):
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
    with progress_bar() as progress, first_interrupt_stops(stop):
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



class StageBars:
    """progress(done, total, stage) rendered as one tqdm bar per stage on stderr.

    A stage's bar ends when it reaches its total. The last report is remembered, so that an
    interruption can say how far the stage got: every report comes after its work was saved.
    """

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream or sys.stderr
        self.stage = ""
        self.done = 0
        self.total = 0
        self._bar: Any = None

    def __call__(self, done: int, total: int, stage: str) -> None:
        from tqdm import tqdm

        if self._bar is None or stage != self.stage:
            self.close()
            self._bar = tqdm(total=total, desc=stage, unit="image", file=self.stream,
                             dynamic_ncols=True, mininterval=0.2)
        self.stage, self.done, self.total = stage, done, total
        self._bar.total = total
        self._bar.update(done - self._bar.n)
        if done >= total:
            self.close()

    def close(self) -> None:
        """End the current bar (its last state stays on the terminal)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def interrupted(self) -> str:
        """What an interruption kept, and the command that finishes the work."""
        if self.stage == ADDING_STAGE and self.done < self.total:
            return (f"\nInterrupted: {self.done:,} of {self.total:,} files are done and saved; "
                    "run the same `library add` again for the rest (files already in the "
                    "library are skipped quickly) and to index them.")
        if self.stage and self.stage != ADDING_STAGE:
            return (f"\nInterrupted while {self.stage}: {self.done:,} of {self.total:,} images "
                    f"are done and saved; run `{INDEX_COMMAND}` to finish indexing (`library "
                    "add` and compose finish it too).")
        return INTERRUPTED["library"]


def _with_bars(bars: StageBars, work: Callable[[], Any]) -> tuple[bool, Any]:
    """(True, work()) with the stage bars closed after; (False, None) after Ctrl-C or
    SIGTERM, once the message saying how far each stage got is printed."""
    try:
        try:
            return True, work()
        finally:
            bars.close()
    except KeyboardInterrupt:
        print(bars.interrupted(), file=sys.stderr)
        return False, None


def cmd_library_add(services: Services, args: argparse.Namespace, bars: StageBars) -> int:
    """Add files and folders, then index what is new, with a bar per stage on stderr."""
    from composer.library import add_images

    def add_and_index() -> Any:
        added = add_images(services.images, args.paths, caption=args.caption,
                           source=args.source, license=args.license,
                           attribution=args.attribution,
                           allow_near_duplicates=args.keep_near_duplicates, progress=bars)
        services.retriever.index(progress=bars)
        return added

    finished, result = _with_bars(bars, add_and_index)
    if not finished:
        return EXIT_INTERRUPTED
    print(f"Added {len(result.added)}, already present {len(result.existing)}, "
          f"near-duplicates skipped {len(result.near_duplicates)}, failed {len(result.failed)}.")
    for path, existing, distance in result.near_duplicates:
        print(f"  {path}: looks like {existing.id[:12]} ({existing.caption[:40]!r}, distance "
              f"{distance}); add it with --keep-near-duplicates to keep both", file=sys.stderr)
    for path, message in result.failed:
        print(f"  {path}: {message}", file=sys.stderr)
    if result.uncaptioned:
        print(f"  {len(result.uncaptioned)} images have no caption, so articles cannot find "
              "them yet: add photo.jpg.txt sidecar files or captions.csv and run `library add` "
              "again, or run `library caption` with a captioning model.", file=sys.stderr)
    return 0 if not result.failed else EXIT_INPUT


def cmd_library_index(services: Services, args: argparse.Namespace, bars: StageBars) -> int:
    """Index what an interrupted import left: caption vectors, pixel vectors, visible text."""
    finished, _ = _with_bars(bars, lambda: services.retriever.index(progress=bars))
    if not finished:
        return EXIT_INTERRUPTED
    print(f"The library is indexed ({services.images.count():,} images).")
    return 0


MAX_SEARCH_RESULTS = 100


def search_results(services: Services, query: str, k: int = 10, source: str | None = None,
                   license: str | None = None) -> list[dict[str, Any]]:
    """The library's best images for a description, best first, as plain records (rank,
    score, id, caption, license, source, attribution), ranked by the composer's own retriever.

    The CLI is the operator: it searches every image a CLI composition could place.
    """
    if not query.strip():
        raise InputError("the search description is empty: describe the picture you want, "
                         "e.g. \"a lighthouse at night\"")
    if not 1 <= k <= MAX_SEARCH_RESULTS:
        raise InputError(f"--k is {k}; it must be between 1 and {MAX_SEARCH_RESULTS}")
    candidates = services.retriever.search(query, k=k, source=source, license=license)
    images = services.images.get_many([candidate.image_id for candidate in candidates])
    return [{"rank": rank, "score": round(candidate.score, 4), "id": candidate.image_id,
             "caption": candidate.caption, "license": candidate.license,
             "source": images[candidate.image_id].source if candidate.image_id in images else "",
             "attribution": candidate.attribution}
            for rank, candidate in enumerate(candidates, start=1)]


def cmd_library_search(services: Services, args: argparse.Namespace) -> int:
    """Print the ranked images for a description: a table, or JSON with --json (scripts)."""
    import json

    results = search_results(services, args.query, args.k, args.source, args.license)
    if args.json:
        print(json.dumps(results, ensure_ascii=False, indent=2))
        return 0
    if not results:
        print("No images match: add some with `library add`, or loosen --source/--license.",
              file=sys.stderr)
        return 0
    print(f"{'#':>3}  {'score':>6}  {'id':<12}  {'license':<14}  {'source':<16}  caption")
    for row in results:
        print(f"{row['rank']:>3}  {row['score']:>6.3f}  {row['id'][:12]:<12}  "
              f"{(row['license'] or '-')[:14]:<14}  {(row['source'] or '-')[:16]:<16}  "
              f"{' '.join(row['caption'].split())[:70] or '(no caption)'}")
    return 0
