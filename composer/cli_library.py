"""`library add`, `library index` and `library search` on the command line.

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
from typing import Any, Callable

from composer.cli import EXIT_INPUT, EXIT_INTERRUPTED, INTERRUPTED
from composer.library import ADDING_STAGE
from composer.services import Services
from composer.types import InputError

INDEX_COMMAND = "python -m composer library index"


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
