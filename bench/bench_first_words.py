"""Time to first words: how long after Write (or `compose`) a person waits for the first text
about their article, with the embedded writer loaded and warm.

For each brief and round, composes through `Composer.compose` in this process (what the web
app's Write and the CLI's compose both run) and records, from the call:
  - first_outline_s: the first planned section shown ("Section 1: <title> (key points)"),
  - first_draft_s: the first words of article prose (a "draft" event with text),
  - first_kept_s: the first paragraph kept and saved,
stopping after that. With --browser it measures the same in headless Chromium against the
app (app.py started on loopback, warmed by one composition first): from the click on Write
(timed inside the page) to the first planned section heading shown in the article
(first_outline_s) and the first streamed prose (first_draft_s); then Stop. Medians per figure;
JSON out.

    .venv/bin/python bench/bench_first_words.py [--threads 1] [--rounds 3] [--browser]
        [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BRIEFS = ["The history of lighthouses", "How bees make honey", "A beginner's guide to sourdough"]


def first_words(composer, instruction: str) -> dict:
    """One composition, stopped once its first paragraph is saved; seconds to each mark."""
    from composer.types import ComposeRequest

    cancel = threading.Event()
    started = time.perf_counter()
    marks: dict[str, float] = {}
    for event in composer.compose(ComposeRequest(instruction, target_words=300, text_only=True),
                                  cancel=cancel):
        now = time.perf_counter() - started
        if event.stage == "plan" and event.message.startswith("Section "):
            marks.setdefault("first_outline_s", now)
        if event.stage == "draft" and event.pending.strip():
            marks.setdefault("first_draft_s", now)
        if event.stage == "write" and event.block is not None:
            marks.setdefault("first_kept_s", now)
            cancel.set()
    return {key: round(value, 3) for key, value in marks.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path,
                        default=ROOT / "bench" / "results" / "first_words.json")
    parser.add_argument("--browser", action="store_true", help="time it in Chromium")
    args = parser.parse_args()
    if args.browser:
        return browser_main(args)
    from composer.config import Settings
    from composer.services import Services

    home = tempfile.mkdtemp(prefix="bench-first-words-")
    services = Services(Settings.from_env({"COMPOSER_HOME": home,
                                           "COMPOSER_THREADS": str(args.threads)}))
    composer = services.composer()
    first_words(composer, "Warm-up: a short note on tides")  # load, convert, warm caches
    runs = [{"instruction": brief, "round": number, **first_words(composer, brief)}
            for number in range(args.rounds) for brief in BRIEFS]
    for run in runs:
        print(json.dumps(run), flush=True)
    write_report(args, runs, ("first_outline_s", "first_draft_s", "first_kept_s"), {})


def write_report(args: argparse.Namespace, runs: list[dict], keys: tuple[str, ...],
                 extra: dict) -> None:
    """Medians of `keys` over the runs, with the runs, as JSON to args.out (and stdout)."""
    result = {**extra, "threads": args.threads, "cpus": os.cpu_count(),
              "rounds": args.rounds,
              "median": {key: round(statistics.median(r[key] for r in runs if key in r), 3)
                         for key in keys},
              "runs": runs}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["median"]))


# Runs in the page: clicks Write and resolves with the milliseconds until each mark appears.
PAGE_TIMER = """() => new Promise((resolve) => {
  const started = performance.now();
  const marks = {};
  const article = document.querySelector('#xc-article');
  const check = () => {
    const now = performance.now() - started;
    if (!('first_outline_s' in marks) && article.querySelector('h2.planned')) {
      marks.first_outline_s = now / 1000;
    }
    if (!('first_draft_s' in marks) && article.querySelector('p.streaming')) {
      marks.first_draft_s = now / 1000;
    }
    if ('first_draft_s' in marks || now > 120000) resolve(marks);
    else requestAnimationFrame(check);
  };
  document.querySelector('#xc-write').click();
  requestAnimationFrame(check);
})"""


def browser_main(args: argparse.Namespace) -> None:
    """--browser: time first words in headless Chromium against app.py on loopback."""
    import subprocess
    import urllib.request

    from playwright.sync_api import sync_playwright

    from bench.bench_share import free_port

    home = tempfile.mkdtemp(prefix="bench-first-words-browser-")
    port = free_port()
    env = {**os.environ, "COMPOSER_HOME": home, "COMPOSER_PORT": str(port),
           "COMPOSER_THREADS": str(args.threads), "HF_HUB_OFFLINE": "1"}
    app = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(url + "healthz", timeout=1)
                break
            except OSError:
                time.sleep(0.2)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path="/usr/bin/chromium",
                                                 args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(url)
            runs = []
            for number, brief in enumerate(["Warm-up: a short note on tides"]
                                           + [b for _ in range(args.rounds) for b in BRIEFS]):
                page.fill("#xc-instruction textarea", brief)
                page.fill("#xc-words input", "300")
                marks = page.evaluate(PAGE_TIMER)
                page.click("#xc-stop")
                page.wait_for_selector("#xc-stop", state="hidden", timeout=60_000)
                if number:  # the warm-up loads the models
                    runs.append({"instruction": brief, "round": (number - 1) // len(BRIEFS),
                                 **{k: round(v, 3) for k, v in marks.items()}})
                    print(json.dumps(runs[-1]), flush=True)
            page.screenshot(path=str(ROOT / "artifacts" / "screenshots" /
                                     "first_words_browser.png"))
            browser.close()
    finally:
        app.terminate()
        app.wait(timeout=30)
    write_report(args, runs, ("first_outline_s", "first_draft_s"), {"where": "browser"})


if __name__ == "__main__":
    main()
