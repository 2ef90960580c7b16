"""What every Gradio event handler shares: stop flags of model jobs, and errors as toasts.

A model job (plan, write, preview, generate, apply outline) runs under the stop flag of its
browser session, so the Stop button of that browser stops it and no other; a ComposerError
becomes a gr.Error whose message the person reads.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Any, Iterator

import gradio as gr


class JobFlags:
    """Stop flags of model jobs, one per browser session.

    A job's flag is armed when its input check passes (before the queue), so a Stop pressed
    while the job still waits in line stops it too; `start` takes the armed flag (or a new
    one), `stop` sets whatever flag the session has, `finish` forgets it.
    """

    def __init__(self) -> None:
        self._flags: dict[str, threading.Event] = {}
        self._armed: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    def arm(self, session: str) -> threading.Event:
        with self._lock:
            flag = self._armed[session] = threading.Event()
            return flag

    def start(self, session: str) -> threading.Event:
        with self._lock:
            flag = self._armed.pop(session, None) or threading.Event()
            self._flags[session] = flag
            return flag

    def stop(self, session: str) -> bool:
        with self._lock:
            found = [flag for flag in (self._flags.get(session), self._armed.get(session))
                     if flag is not None]
        for flag in found:
            flag.set()
        return bool(found)

    def finish(self, session: str, flag: threading.Event) -> None:
        with self._lock:
            if self._flags.get(session) is flag:
                del self._flags[session]


def session_of(request: gr.Request | None) -> str:
    """The browser session a request comes from: its Stop button's key for model jobs."""
    return getattr(request, "session_hash", None) or "direct"


@contextmanager
def stop_flag(flags: JobFlags, request: gr.Request | None) -> Iterator[threading.Event]:
    """The stop flag of this browser session's model job, set by its Stop button, for as long
    as the job runs."""
    session = session_of(request)
    flag = flags.start(session)
    try:
        yield flag
    finally:
        flags.finish(session, flag)


def fail(error: Exception) -> gr.Error:
    """A handler's error as the toast Gradio shows (the message only, no traceback logged)."""
    return gr.Error(str(error), print_exception=False)


def state_of(doc: Any) -> dict[str, Any]:
    """The per-browser state of the open document: its id and the version the view shows."""
    return {"id": doc.id, "version": doc.version}
