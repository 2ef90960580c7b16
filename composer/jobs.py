"""Where a composition runs: in this process (the default), or as a durable job on a queue.

`Services.jobs` is one of these; the UI asks it to compose and reads ProgressEvents back,
whichever it is:
  LocalJobs   the composition runs in the request that asked for it (zero set-up);
  QueuedJobs  (composer/queue.py, when COMPOSER_REDIS_URL is set) it is a job on Redis that
              `python -m composer worker` runs on any machine; the events come back over Redis.
The events cross processes as JSON (`event_to_json`, `event_from_json`).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import asdict
from typing import Any

from composer.types import ComposeRequest, Outline, ProgressEvent, TextBlock

TERMINAL_STAGES = ("done", "stopped")


class LocalJobs:
    """Compositions run in the calling process: closing the request stops them."""

    durable = False

    def __init__(self, services: Any) -> None:
        self.services = services

    def compose(self, request: ComposeRequest, outline: Outline | None, owner: str | None,
                cancel: threading.Event | None = None) -> Iterator[ProgressEvent]:
        """Compose and save, yielding progress (Composer.compose)."""
        composer = self.services.composer(with_images=not request.text_only)
        yield from composer.compose(request, outline=outline, cancel=cancel, owner=owner)


def event_to_json(event: ProgressEvent) -> str:
    """A progress event as JSON, to send to another process."""
    return json.dumps(asdict(event), ensure_ascii=False)


def event_from_json(text: str) -> ProgressEvent:
    """The progress event `event_to_json` wrote."""
    data = json.loads(text)
    block = data.pop("block", None)
    return ProgressEvent(**data, block=TextBlock(**block) if block else None)
