"""`python -m composer eval BRIEFS.jsonl`: compose each brief, print a table, write JSON.

    python -m composer eval tests/data/briefs.jsonl --limit 5 --text-only --out results.json

A tqdm bar on stderr advances per brief; the table goes to stdout. Ctrl-C stops the brief
being composed (its partial article is saved, marked interrupted) and prints the table of
the briefs done so far (and writes their JSON when --out is given).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from composer import eval as evaluation
from composer.cli_common import EXIT_INTERRUPTED
from composer.config import DECODINGS
from composer.types import GenerationConfig


def add_eval_parser(commands: argparse._SubParsersAction) -> None:
    """Declare the eval subcommand and its options."""
    parser = commands.add_parser("eval", help="compose each brief of a JSONL file and measure "
                                 "the articles (length score, meta-commentary, repeats ...)")
    parser.add_argument("briefs", type=Path, help="JSONL file of briefs, e.g. "
                        "tests/data/briefs.jsonl")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    parser.add_argument("--limit", type=int, default=None, help="only the first N briefs")
    parser.add_argument("--ids", default="", help="only these brief ids, comma-separated")
    parser.add_argument("--text-only", action="store_true", help="compose without images")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--candidates", type=int, default=GenerationConfig.candidates,
                        help="drafts of each paragraph (default %(default)s)")
    parser.add_argument("--decoding", choices=DECODINGS, default="default",
                        help="'opera' to measure OPERA decoding against the default")


def cmd_eval(services: Any, args: argparse.Namespace) -> int:
    """Run the eval; print the table (also after Ctrl-C) and write --out."""
    from tqdm import tqdm

    ids = [part.strip() for part in args.ids.split(",") if part.strip()]
    if args.limit is not None and args.limit < 1:
        from composer.types import InputError

        raise InputError(f"--limit is {args.limit}; it must be 1 or more")
    briefs = evaluation.load_briefs(args.briefs, limit=args.limit, ids=ids or None)
    results: list[evaluation.BriefResult] = []
    bar = tqdm(total=len(briefs), unit="brief", file=sys.stderr, dynamic_ncols=True)
    interrupted = False

    def on_event(event: Any) -> None:
        if event.message:  # stage changes only: a streamed token would redraw the bar
            bar.set_postfix_str(f"{brief.id}: {event.message}"[:60])

    try:
        for brief in briefs:
            bar.set_postfix_str(brief.id[:60])
            results.append(evaluation.run_brief(
                services, brief, text_only=args.text_only, seed=args.seed, on_event=on_event,
                candidates=args.candidates, decoding=args.decoding))
            bar.update(1)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        bar.close()
    if interrupted:
        print(f"\nInterrupted: {len(results)} of {len(briefs)} briefs done (the article being "
              "composed is saved, marked interrupted).", file=sys.stderr)
    print(evaluation.format_table(results))
    if args.out:
        settings = {"briefs": str(args.briefs), "model": services.settings.model,
                    "commit": _commit(),
                    "text_only": args.text_only, "seed": args.seed,
                    "candidates": args.candidates, "decoding": args.decoding,
                    "limit": args.limit, "ids": ids, "interrupted": interrupted}
        data = evaluation.to_json(results, settings)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(data, ensure_ascii=False, indent=2) + "\n",
                            encoding="utf-8")
        print(f"Wrote {args.out}", file=sys.stderr)
    return EXIT_INTERRUPTED if interrupted else 0


def _commit() -> str:
    """The git commit of the code that ran (for the JSON), or "" outside a git checkout."""
    import subprocess

    try:
        done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=5, cwd=Path(__file__).resolve().parent)
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""
