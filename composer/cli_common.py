"""What the command-line modules share: exit statuses, progress bars, and Ctrl-C handling.

The first Ctrl-C of a long job (captioning, training, generating) asks it to stop after its
current unit of work; a second one stops at once. Bars go to stderr, results to stdout.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Callable, Iterator

EXIT_INPUT = 2
EXIT_INTERRUPTED = 130

# What Ctrl-C or SIGTERM kept, per command (commands that know more catch it themselves).
INTERRUPTED = {
    "compose": "\nInterrupted: the text written so far is saved (status: interrupted).",
    "library": ("\nInterrupted: the images added and indexed so far are saved; run "
                "`python -m composer library index` to finish indexing."),
}


CAPTION_STOP_NOTICE = ("\nStopping after the current image (Ctrl-C again to stop now); the "
                       "captions written so far are kept.")
TRAINING_STOP_NOTICE = ("\nStopping after the current step (Ctrl-C again to stop now); what "
                        "was trained so far will be saved.")


@contextlib.contextmanager
def progress_bar(unit: str = "image") -> Iterator[Callable[[int, int, str], None]]:
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


@contextlib.contextmanager
def step_bar(total: int = 0) -> Iterator[Callable[[int, int, float], None]]:
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


@contextlib.contextmanager
def first_interrupt_stops(stop: threading.Event, notice: str = CAPTION_STOP_NOTICE
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

