"""Renders ProgressEvents in a terminal: a progress bar line per stage, text streamed as written.

Each paragraph goes to stdout once it is checked and kept; bars, stages, warnings and (on a
terminal) the last words of the draft being written go to stderr, so `compose ... >
article.txt` captures only the article.
"""

from __future__ import annotations

import shutil
import sys
import time
from typing import TextIO

from composer.languages import length_text
from composer.types import ProgressEvent

BAR_WIDTH = 24


def bar(fraction: float, width: int = BAR_WIDTH) -> str:
    """A text progress bar like [██████░░░░]  60%."""
    fraction = max(0.0, min(1.0, fraction))
    filled = round(fraction * width)
    return f"[{'█' * filled}{'░' * (width - filled)}] {fraction * 100:3.0f}%"


class TerminalProgress:
    """Prints events: stage lines with a bar on `err`, streamed text on `out`."""

    def __init__(self, out: TextIO | None = None, err: TextIO | None = None,
                 stream_text: bool = True, language: str = "en"):
        """`language` names lengths: words, or characters (字) for Chinese."""
        self.language = language
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.stream_text = stream_text
        self.started = time.perf_counter()
        self.at_line_start = True
        self.last_fraction = 0.0
        self.draft_shown = False

    def __call__(self, event: ProgressEvent) -> None:
        self.last_fraction = max(self.last_fraction, event.fraction)
        if event.stage == "draft":
            self._draft(event.pending)
            return
        if event.delta:
            if self.draft_shown:
                self.err.write("\r\x1b[2K")
                self.err.flush()
                self.draft_shown = False
            if self.stream_text:
                self.out.write(event.delta)
                self.out.flush()
                self.at_line_start = event.delta.endswith("\n")
            return
        if not event.message:
            return
        if event.stage == "warning":
            self._line(f"warning: {event.message}")
            return
        elapsed = time.perf_counter() - self.started
        detail = f" · {length_text(event.words, self.language)}" if event.words else ""
        self._line(f"{bar(self.last_fraction)} {event.message}{detail} · {elapsed:.0f}s")

    def _draft(self, pending: str) -> None:
        """On a terminal, the draft's last words on one line that keeps being rewritten
        (the kept paragraph then goes to stdout)."""
        if not (self.stream_text and self.err.isatty()):
            return
        width = shutil.get_terminal_size((100, 20)).columns - 4
        tail = " ".join(pending.split())[-width:]
        self.err.write(f"\r\x1b[2K\x1b[2m… {tail}\x1b[0m")
        self.err.flush()
        self.draft_shown = True

    def _line(self, text: str) -> None:
        if self.draft_shown:
            self.err.write("\r\x1b[2K")
            self.draft_shown = False
        if not self.at_line_start:
            self.out.flush()
            self.err.write("\n")
            self.at_line_start = True
        self.err.write(text + "\n")
        self.err.flush()
