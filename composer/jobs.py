"""Where a composition runs: in this process (the default), or as a durable job on a queue.

`Services.jobs` is one of these; the UI asks it to compose and reads ProgressEvents back,
and a page that opens a document still being written `watch`es it (and may `stop` it),
whichever it is:
  LocalJobs   the composition runs in the request that asked for it (zero set-up);
  QueuedJobs  (composer/queue.py, when COMPOSER_REDIS_URL is set) it is a job on Redis that
              `python -m composer worker` runs on any machine; the events come back over Redis.
The events cross processes as JSON (`event_to_json`, `event_from_json`).
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Iterator
from dataclasses import asdict
from typing import Any

from composer.types import ComposeRequest, Outline, ProgressEvent, TextBlock

TERMINAL_STAGES = ("done", "stopped")
WATCH_WAIT_SECONDS = 1.0  # a watcher looks whether the job still runs this often


class LocalJobs:
    """Compositions run in the calling process: closing the request stops them.

    Another page of this process may watch one (it hears the same events from then on)
    and stop it (the composition's cancel flag is kept by document id)."""

    durable = False

    def __init__(self, services: Any, wait_seconds: float = WATCH_WAIT_SECONDS) -> None:
        self.services = services
        self.wait_seconds = wait_seconds
        self._running: dict[str, threading.Event] = {}
        self._watchers: dict[str, list[queue.SimpleQueue]] = {}
        self._lock = threading.Lock()

    def compose(self, request: ComposeRequest, outline: Outline | None, owner: str | None,
                cancel: threading.Event | None = None) -> Iterator[ProgressEvent]:
        """Compose and save, yielding progress (Composer.compose)."""
        cancel = cancel or threading.Event()
        composer = self.services.composer(with_images=not request.text_only)
        doc_id = None
        try:
            for event in composer.compose(request, outline=outline, cancel=cancel, owner=owner):
                if doc_id is None and event.document_id:
                    doc_id = event.document_id
                    with self._lock:
                        self._running[doc_id] = cancel
                with self._lock:
                    watchers = list(self._watchers.get(doc_id, ()))
                for watcher in watchers:
                    watcher.put(event)
                yield event
        finally:
            if doc_id is not None:
                with self._lock:
                    self._running.pop(doc_id, None)

    def running(self, job_id: str) -> bool:
        """Whether this process writes document `job_id` now."""
        with self._lock:
            return job_id in self._running

    def stop(self, job_id: str) -> None:
        """Stop the composition of document `job_id` if this process writes it."""
        with self._lock:
            flag = self._running.get(job_id)
        if flag is not None:
            flag.set()

    def watch(self, job_id: str, cancel: threading.Event | None = None
              ) -> Iterator[ProgressEvent]:
        """The events of a composition another page started, from now until it is done or
        stopped (a page that opens the document has read what is saved so far). Setting
        `cancel` stops the composition."""
        heard: queue.SimpleQueue = queue.SimpleQueue()
        with self._lock:
            self._watchers.setdefault(job_id, []).append(heard)
        stopping = False
        try:
            while True:
                if cancel is not None and cancel.is_set() and not stopping:
                    self.stop(job_id)
                    stopping = True
                try:
                    event = heard.get(timeout=self.wait_seconds)
                except queue.Empty:
                    if self.running(job_id):
                        continue
                    # it ended between two events: say how, from the document
                    doc = self.services.documents.get(job_id)
                    finished = doc.status == "done"
                    yield ProgressEvent("done" if finished else "stopped",
                                        "Done" if finished else "It is not being written now",
                                        words=doc.word_count, fraction=1.0, document_id=job_id)
                    return
                yield event
                if event.stage in TERMINAL_STAGES:
                    return
        finally:
            with self._lock:
                watchers = self._watchers.get(job_id, [])
                if heard in watchers:
                    watchers.remove(heard)
                if not watchers:
                    self._watchers.pop(job_id, None)


def event_to_json(event: ProgressEvent) -> str:
    """A progress event as JSON, to send to another process."""
    return json.dumps(asdict(event), ensure_ascii=False)


def event_from_json(text: str) -> ProgressEvent:
    """The progress event `event_to_json` wrote."""
    data = json.loads(text)
    block = data.pop("block", None)
    return ProgressEvent(**data, block=TextBlock(**block) if block else None)
