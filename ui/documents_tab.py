"""The Documents tab: the owner's documents, and open / duplicate / delete.

Opening a document shows it in the Compose tab (its article, state, image slots and title).
"""

from __future__ import annotations

from typing import Any, Callable

import gradio as gr

from composer.types import ComposerError, Document
from ui import handlers as h
from ui.article_view import render_document
from ui.i18n import t
from ui.jobs import fail, state_of

OwnerOf = Callable[[Any], str]  # gr.Request -> owner (Identities.owner_of)


def documents_tab() -> dict[str, Any]:
    """The Documents tab's components (inside the caller's gr.Tab), by name."""
    d: dict[str, Any] = {}
    d["refresh"] = gr.Button(t("refresh"), size="sm")
    d["table"] = gr.Dataframe(headers=h.DOCUMENT_HEADERS, interactive=False,
                              label=t("your_documents"), elem_id="xc-documents")
    with gr.Row():
        d["selected"] = gr.Textbox(label=t("selected"), elem_id="xc-selected")
        d["open"] = gr.Button(t("open"), size="sm", elem_id="xc-open")
        d["duplicate"] = gr.Button(t("duplicate"), size="sm")
        d["confirm"] = gr.Checkbox(False, label=t("confirm_delete"))
        d["delete"] = gr.Button(t("delete"), size="sm", variant="stop", elem_id="xc-delete")
    return d


def _doc_outputs(services: Any, doc: Document) -> tuple[Any, ...]:
    """What the compose view shows for an open document: html, state, slot choices, link."""
    slots = h.image_slots(doc)
    return (render_document(services, doc), state_of(doc),
            gr.update(choices=slots, value=slots[0][1] if slots else None))


def wire_documents(services: Any, c: dict[str, Any], d: dict[str, Any], owner_of: OwnerOf,
                   doc_state: Any, tabs: Any) -> None:
    """Connect the Documents tab; opening a document fills the Compose tab `c`."""
    def refresh(request: gr.Request = None):
        try:
            return h.list_documents(services, owner_of(request))
        except ComposerError as error:
            raise fail(error)

    def select(event: gr.SelectData, rows: Any):
        rows = h.table_rows(rows)
        return rows[event.index[0]][4] if rows and event.index else ""

    def open_doc(doc_id: str, request: gr.Request = None):
        try:
            doc = h.owned_document(services, doc_id.strip(), owner_of(request))
        except ComposerError as error:
            raise fail(error)
        html, state, slots = _doc_outputs(services, doc)
        return html, state, slots, doc.title, "", gr.Tabs(selected="compose")

    def duplicate(doc_id: str, request: gr.Request = None):
        try:
            owner = owner_of(request)
            copy = h.duplicate_document(services, doc_id.strip(), owner)
            return h.list_documents(services, owner), copy.id
        except ComposerError as error:
            raise fail(error)

    def delete(doc_id: str, confirmed: bool, request: gr.Request = None):
        try:
            owner = owner_of(request)
            h.delete_document(services, doc_id.strip(), owner, confirmed)
            return h.list_documents(services, owner), "", False
        except ComposerError as error:
            gr.Warning(str(error))  # a toast; the table and the tick stay usable
            return gr.skip(), gr.skip(), gr.skip()

    d["refresh"].click(refresh, None, d["table"], api_name="documents")
    d["tab"].select(refresh, None, d["table"], api_visibility="undocumented")
    d["table"].select(select, d["table"], d["selected"], api_visibility="undocumented")
    d["open"].click(open_doc, [d["selected"]],
                    [c["article"], doc_state, c["slot"], c["title"], c["status"], tabs],
                    api_name="open")
    d["duplicate"].click(duplicate, [d["selected"]], [d["table"], d["selected"]],
                         api_name="duplicate")
    d["delete"].click(delete, [d["selected"], d["confirm"]],
                      [d["table"], d["selected"], d["confirm"]], api_name="delete")


