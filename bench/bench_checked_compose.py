"""Compose time with checked paragraphs (k drafts in one batch) vs the code before them.

Runs `python -m composer compose BRIEF --text-only` with the embedded model in three arms,
alternated over rounds on the same briefs: the baseline commit (one draft per section, no
checks; checked out into a git worktree), this tree with --candidates 1, and this tree with
the default --candidates 3. Reports wall seconds (model load included in every arm alike),
words written, seconds per word, and the ratio of each arm's seconds per word to the
baseline's. Writes bench/results/checked_compose.json.

    .venv/bin/python bench/bench_checked_compose.py [--baseline 6654c56] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BRIEFS = ["Birdwatching in city parks: a beginner's guide",
          "How to brew green tea at home"]


def compose(tree: Path, home: Path, brief: str, words: int, extra: list[str], out: Path
            ) -> tuple[float, int]:
    """(wall seconds, words written) of one composition."""
    env = dict(os.environ, COMPOSER_HOME=str(home), COMPOSER_THREADS="1", PYTHONPATH=str(tree))
    env.pop("DATABASE_URL", None)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "composer", "compose", brief, "--words",
                           str(words), "--text-only", "--quiet", "--out", str(out), *extra],
                          cwd=tree, env=env, capture_output=True, text=True, timeout=1800)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"compose failed in {tree}: {done.stderr[-2000:]}")
    text = out.read_text(encoding="utf-8")
    body = "\n".join(line for line in text.splitlines() if not line.startswith("#"))
    return seconds, len(re.findall(r"\S+", body))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default="6654c56", help="commit before the checks")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--words", type=int, default=400)
    parser.add_argument("--model-cache", type=Path, default=None,
                        help="a COMPOSER_HOME/cache holding the converted embedded model")
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/checked_compose.json")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="xc-bench-"))
    baseline = work / "baseline"
    subprocess.run(["git", "worktree", "add", "--detach", str(baseline), args.baseline],
                   cwd=ROOT, check=True, capture_output=True)
    arms = {"baseline": (baseline, []), "candidates_1": (ROOT, ["--candidates", "1"]),
            "candidates_3": (ROOT, ["--candidates", "3"])}
    try:
        runs: dict[str, list[dict]] = {name: [] for name in arms}
        for round_number in range(args.rounds):
            for brief in BRIEFS:
                for name, (tree, extra) in arms.items():
                    home = work / f"home-{name}"
                    home.mkdir(exist_ok=True)
                    if args.model_cache and not (home / "cache").exists():
                        (home / "cache").symlink_to(args.model_cache.resolve())
                    out = work / f"{name}-{round_number}.md"
                    seconds, words = compose(tree, home, brief, args.words, extra, out)
                    runs[name].append({"brief": brief, "round": round_number,
                                       "seconds": round(seconds, 2), "words": words})
                    print(f"{name:13s} {seconds:6.1f} s {words:5d} words  {brief}", flush=True)
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(baseline)], cwd=ROOT,
                       capture_output=True)

    def per_word(name: str) -> list[float]:
        return [run["seconds"] / max(1, run["words"]) for run in runs[name]]

    base = statistics.median(per_word("baseline"))
    result = {
        "what": "wall seconds per word written, text-only compose with the embedded model "
                "(1 thread), alternating arms; ratio = arm median / baseline median",
        "baseline": args.baseline, "words": args.words, "rounds": args.rounds,
        "machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
        "runs": runs,
        "seconds_per_word": {name: round(statistics.median(per_word(name)), 4)
                             for name in arms},
        "ratio_to_baseline": {name: round(statistics.median(per_word(name)) / base, 3)
                              for name in arms},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("seconds_per_word", "ratio_to_baseline")},
                     indent=2))


if __name__ == "__main__":
    main()
