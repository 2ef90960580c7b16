"""Seconds a person waits for Stop and for input checks, in a real browser on the real app.

    .venv/bin/python bench/bench_jobs.py [--home DIR] [--rounds 3]

Serves the app with the embedded model on a loopback port and drives headless Chromium:
- check_seconds: one tab composes (the model queue is busy) while a second tab submits bad
  input (empty, zero-width only, too long, words=5); seconds from the click to the error
  message on screen, each case `rounds` times.
- stop_seconds: a composition is stopped once text is on the page; seconds from the click to
  the status line saying "Stopped" and to the document being `interrupted` in the database.
- preview_stop_seconds: the same for an edit preview (Expand) of the written article.
Writes bench/results/jobs.json.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
RESULTS = Path(__file__).resolve().parent / "results" / "jobs.json"
TOAST = ".toast-body.error, [data-testid='toast-body'].error"
BAD_INPUT = [("empty", "", "800"), ("zero-width only", "\u200b\u202e \ufeff", "800"),
             ("100,001 characters", "x" * 100_001, "800"), ("words=5", "Gardens", "5")]


def serve(home: Path):
    """(url, services, server) of the app with the embedded model, serving in a thread."""
    import uvicorn

    from app import create_app
    from composer.config import Settings
    from composer.services import Services

    services = Services(Settings.from_env({}, home=home))
    services.lm  # load (and on first use convert) the model before timing anything
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(services), host="127.0.0.1", port=port,
                                           log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return f"http://127.0.0.1:{port}", services, server


def open_page(browser, url: str):
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.goto(url + "/")
    page.wait_for_selector("#xc-write:not([disabled])", timeout=60_000)
    return page


def start_writing(page, instruction: str, words: str) -> None:
    page.fill("#xc-instruction textarea", instruction)
    page.fill("#xc-words input", words)
    page.click("#xc-write")
    page.wait_for_function("document.querySelector('#xc-article p')?.innerText.length > 20",
                           timeout=600_000)


def wait_status(page, text: str, timeout: int = 120_000) -> None:
    page.wait_for_function("text => document.querySelector('#xc-status')?.innerText"
                           ".includes(text)", arg=text, timeout=timeout, polling=20)


def latest_status(services) -> tuple[str, str]:
    row = services.documents.list(limit=1)[0]
    return row.id, row.status


def time_checks(busy, other, services, rounds: int) -> dict[str, list[float]]:
    """Seconds from a bad submission to its message, while `busy` holds the model queue."""
    start_writing(busy, "The history of lighthouses", "2000")
    seconds: dict[str, list[float]] = {name: [] for name, _, _ in BAD_INPUT}
    for _ in range(rounds):
        for name, instruction, words in BAD_INPUT:
            other.fill("#xc-instruction textarea", instruction)
            other.fill("#xc-words input", words)
            start = time.perf_counter()
            other.click("#xc-write")
            other.locator(TOAST).first.wait_for(timeout=120_000)
            seconds[name].append(time.perf_counter() - start)
            assert latest_status(services)[1] == "composing", "the busy composition ended"
            close_toasts(other)
    return seconds


def close_toasts(page) -> None:
    """Close every message toast, so the next one is seen as new."""
    for button in page.locator("button.toast-close").all():
        if button.is_visible():
            button.click()
    page.locator(TOAST).first.wait_for(state="detached", timeout=10_000)


def time_stop(page, services, stop_button: str, stopped_text: str) -> dict[str, float]:
    """Seconds from clicking Stop to the status line and to the database saying so."""
    start = time.perf_counter()
    page.click(stop_button)
    wait_status(page, stopped_text)
    shown = time.perf_counter() - start
    doc_id, status = latest_status(services)
    while status == "composing" and time.perf_counter() - start < 60:
        time.sleep(0.01)
        doc_id, status = latest_status(services)
    return {"status_line": shown, "database": time.perf_counter() - start, "status": status}


def time_preview_stop(page) -> float:
    """Seconds from Stop to the status line, for an Expand preview of paragraph 1."""
    page.click("#xc-paragraph input")
    page.locator("ul[role='listbox'] li", has_text="¶1").first.click()
    page.click("label:has-text('Expand')")
    page.click("#xc-preview")
    page.wait_for_function("document.querySelector('#xc-preview-text textarea')?.value"
                           ".length > 20", timeout=300_000)
    start = time.perf_counter()
    page.click("#xc-edit-stop")
    wait_status(page, "Stopped: the preview keeps")
    return time.perf_counter() - start


def summary(values: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(values), 3), "max": round(max(values), 3),
            "runs": len(values)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, help="data dir (default: a temporary one; pass "
                        "one with a converted model cache to skip the conversion)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    from tests.support_browser import CHROMIUM, FLAGS

    home = args.home or Path(tempfile.mkdtemp(prefix="bench-jobs-"))
    url, services, server = serve(home)
    result: dict[str, object] = {"model": services.lm.name, "rounds": args.rounds}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        busy, other = open_page(browser, url), open_page(browser, url)
        checks = time_checks(busy, other, services, args.rounds)
        result["check_seconds"] = {name: summary(values) for name, values in checks.items()}
        stops = [time_stop(busy, services, "#xc-stop", "Stopped")]
        for round_number in range(args.rounds - 1):
            start_writing(busy, f"Gardens on rooftops, part {round_number + 1}", "600")
            stops.append(time_stop(busy, services, "#xc-stop", "Stopped"))
        result["stop_seconds"] = {
            "status_line": summary([stop["status_line"] for stop in stops]),
            "database": summary([stop["database"] for stop in stops]),
            "statuses": [stop["status"] for stop in stops]}
        previews = [time_preview_stop(busy) for _ in range(args.rounds)]
        result["preview_stop_seconds"] = summary(previews)
        browser.close()
    server.should_exit = True
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
