"""Following a document that is still being written, when a page opens it.

A composition goes on when the page that started it is closed (a queued job runs on a
worker; an in-process one runs until it finishes), so the Documents tab lists it as being
written. Opening it shows it live in the Compose tab: the article grows as paragraphs are
saved, the progress line says where it stands, and Stop stops it, from this page too.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any, Callable

import gradio as gr

from composer.types import ComposerError
from ui import handlers as h
from ui.compose_tab import QUIET, running
from ui.doc_view import DocView
from ui.i18n import language_of, say
from ui.jobs import JobFlags, fail, stop_flag
from ui.progress_line import Progress, progress_line

OwnerOf = Callable[[Any], str]  # gr.Request -> owner (Identities.owner_of)


def wire_follow(services: Any, flags: JobFlags, c: dict[str, Any], view: DocView,
                owner_of: OwnerOf, opened: Any) -> None:
    """After `opened` (the event that opened a document into `view.state`), follow the
    document live while it is being written."""
    buttons = [c["plan"], c["write"], c["stop"]]
    nothing = (gr.skip(),) * len(view.outputs)

    def follow(request: gr.Request, state: dict | None):
        doc_id = (state or {}).get("id")
        unchanged = (gr.skip(),) * (5 + len(view.outputs))
        if not doc_id:
            yield unchanged
            return
        language, started = language_of(request), time.monotonic()
        with stop_flag(flags, request) as flag:
            try:
                owner = owner_of(request)
                doc = h.owned_document(services, doc_id, owner)
                if not h.being_written(services, doc):
                    yield unchanged
                    return
                started -= _age_seconds(doc.created_at)  # the clock counts from its start
                yield (gr.skip(), say(language, "following", title=doc.title),
                       *running(True), *nothing)
                for update in h.follow_article(services, doc_id, owner, flag, doc=doc):
                    line = progress_line(language, Progress(
                        update.stage, update.section, update.sections, update.words,
                        time.monotonic() - started, update.fraction, update.position,
                        update.wait_seconds))
                    if not update.finished:
                        yield update.html, line, *running(True), *nothing
                        continue
                    yield (update.html, f"{line} · {say(language, 'next_step')}",
                           *running(False), *view.show(services, update.document, language))
            except ComposerError as error:
                raise fail(error)

    opened.then(follow, view.state, [c["article"], c["status"], *buttons, *view.outputs],
                concurrency_id="follow", concurrency_limit=None, api_name="follow", **QUIET)


def _age_seconds(created_at: str) -> float:
    """Seconds since an ISO time stored with the document (0 when it cannot be read)."""
    try:
        created = datetime.fromisoformat(created_at)
    except (TypeError, ValueError):
        return 0.0
    if created.tzinfo is None:
        created = created.replace(tzinfo=timezone.utc)
    return max(0.0, (datetime.now(timezone.utc) - created).total_seconds())
