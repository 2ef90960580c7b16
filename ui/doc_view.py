"""What shows the open document in the Edit tab, updated together after every change.

The article, the open document's state ({"id", "version"}), the pickers (images,
paragraphs, versions), Undo and Redo (enabled only when there is something to undo or redo),
and the panel itself (shown once a document is open, a hint before). The Compose tab's
article is updated by the events that change the document.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from composer.types import Document
from ui import editing as ed
from ui import handlers as h
from ui.article_view import render_document
from ui.jobs import state_of


def keep(choices: list[tuple[str, Any]], value: Any) -> Any:
    """`value` if it is still one of the choices, else the first choice (or None)."""
    values = [choice[1] for choice in choices]
    value = as_int(value)
    return value if value in values else (values[0] if values else None)


def as_int(value: Any) -> Any:
    """A picker's value as the int id it stands for (Gradio may send it as a string)."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return value


@dataclass
class DocView:
    """The components (by role) that show the open document in the Edit tab."""

    article: Any
    state: Any
    slot: Any
    block: Any
    history: Any
    undo: Any
    redo: Any
    panel: Any
    empty: Any
    apply_outline: Any

    @property
    def outputs(self) -> list[Any]:
        """The components `show` and `clear` update, in their order."""
        return [self.article, self.state, self.slot, self.block, self.history, self.undo,
                self.redo, self.panel, self.empty, self.apply_outline]

    def show(self, services: Any, doc: Document, language: str = "en", block: Any = None,
             slot: Any = None, html: str | None = None) -> tuple[Any, ...]:
        """The values that show `doc` (already loaded: nothing is read but its history);
        the picked paragraph and image stay picked while they exist."""
        slots = h.image_slots(doc)
        paragraphs = ed.paragraph_choices(doc)
        versions, can_undo, can_redo = ed.history_view(services, doc)
        return (render_document(services, doc) if html is None else html, state_of(doc),
                gr.update(choices=slots, value=keep(slots, slot)),
                gr.update(choices=paragraphs, value=keep(paragraphs, block)),
                gr.update(choices=versions, value=versions[0][1] if versions else None),
                gr.update(interactive=can_undo), gr.update(interactive=can_redo),
                gr.update(visible=True), gr.update(visible=False), gr.update(visible=True))

    def clear(self) -> tuple[Any, ...]:
        """The values once no document is open (the open one was deleted)."""
        empty = gr.update(choices=[], value=None)
        return ("", None, empty, empty, empty, gr.update(interactive=False),
                gr.update(interactive=False), gr.update(visible=False), gr.update(visible=True),
                gr.update(visible=False))
