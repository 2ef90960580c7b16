"""The Documents tab: the owner's documents; clicking one opens it in the Edit tab.

Opening shows the article in the Edit and Compose tabs, and puts its title and outline in
the Compose tab's outline (so sections can be added and written). Duplicating and deleting
are done on the open document, in the Edit tab's "Share".
"""

from __future__ import annotations

from typing import Any, Callable

import gradio as gr

from composer.types import ComposerError
from ui import handlers as h
from ui.article_view import render_document
from ui.doc_view import DocView
from ui.i18n import language_of, say, t
from ui.jobs import fail
from ui.outline_table import DOCUMENT_WIDTHS, documents_value, outline_value

OwnerOf = Callable[[Any], str]  # gr.Request -> owner (Identities.owner_of)
STATUSES = ("composing", "done", "interrupted", "failed")  # each has a translated label


def documents_tab() -> dict[str, Any]:
    """The Documents tab's components (inside the caller's gr.Tab), by name."""
    d: dict[str, Any] = {}
    with gr.Row():
        d["hint"] = gr.Markdown(t("open_hint"), elem_id="xc-documents-hint")
        d["none"] = gr.Markdown(t("no_documents"), visible=False, elem_id="xc-no-documents")
        d["refresh"] = gr.Button(t("refresh"), size="sm", scale=0, min_width=100,
                                 elem_id="xc-documents-refresh")
    d["ids"] = gr.State([])
    d["table"] = gr.Dataframe(value=documents_value("en", []), interactive=False, wrap=True,
                              column_widths=DOCUMENT_WIDTHS, label=t("your_documents"),
                              show_label=False, elem_id="xc-documents")
    return d


def wire_documents(services: Any, c: dict[str, Any], d: dict[str, Any], e: dict[str, Any],
                   owner_of: OwnerOf, view: DocView, tabs: Any) -> Any:
    """Connect the Documents tab; opening a document fills the Edit tab `e` (and `c`).
    Returns the event that opens one (a document being written is followed after it)."""
    def refresh(request: gr.Request = None):
        try:
            rows = h.list_documents(services, owner_of(request))
        except ComposerError as error:
            raise fail(error)
        language = language_of(request)
        shown = [[title, updated, say(language, f"status_{status}") if status in STATUSES
                  else status, words]
                 for title, updated, status, words, _ in rows]
        return (documents_value(language, shown),
                [row[4] for row in rows], gr.update(visible=bool(rows)),
                gr.update(visible=not rows))

    def open_doc(ids: list[str], event: gr.SelectData, request: gr.Request = None):
        row = event.index[0] if event.index else None
        if row is None or not 0 <= row < len(ids or []):
            return (gr.skip(),) * (len(view.outputs) + 5)
        try:
            doc = h.owned_document(services, ids[row], owner_of(request))
        except ComposerError as error:
            raise fail(error)
        language = language_of(request)
        html = render_document(services, doc)
        rows = h.outline_rows(doc.outline) if doc.outline else []
        # one still being written is watched in the Compose tab (ui/follow.py)
        writing = h.being_written(services, doc)
        return (html, *view.show(services, doc, language, html=html),
                say(language, "opened", title=doc.title), doc.title,
                outline_value(language, rows), gr.Tabs(selected="compose" if writing else "edit"))

    listing = [d["table"], d["ids"], d["hint"], d["none"]]
    d["refresh"].click(refresh, None, listing, api_name="documents")
    d["tab"].select(refresh, None, listing, api_visibility="undocumented")
    return d["table"].select(open_doc, d["ids"],
                             [c["article"], *view.outputs, e["status"], c["title"],
                              c["outline"], tabs], api_name="open", show_progress="hidden")
