"""The editing panel's events: paragraph and image operations, likes, history, the outline.

`wire_editing` connects the components of ui/edit_panel.py to the plain functions of
ui/editing.py. Every action sends the version of the document the view shows; a stale one
(another tab saved first) is refused with a message and nothing is lost.
"""

from __future__ import annotations

from typing import Any, Callable

import gradio as gr

from composer.types import ComposerError, Document
from ui import editing as ed
from ui import handlers as h
from ui.article_view import render_document
from ui.gpu import spaces_gpu
from ui.jobs import JobFlags, fail, session_of, state_of, stop_flag


PREVIEW_STOPPED = ("Stopped: the preview keeps what was written; change it and Accept, or "
                   "Cancel")


def _keep(choices: list[tuple[str, Any]], value: Any) -> Any:
    """`value` if it is still one of the choices, else the first choice (or None)."""
    values = [choice[1] for choice in choices]
    return value if value in values else (values[0] if values else None)


def refreshed(services: Any, doc: Document, block: Any = None, slot: Any = None,
              message: str = "") -> tuple[Any, ...]:
    """What every edit updates: article, state, image slots, paragraphs, history, status."""
    slots = h.image_slots(doc)
    paragraphs = ed.paragraph_choices(doc)
    history = ed.history_choices(services, doc)
    return (render_document(services, doc), state_of(doc),
            gr.update(choices=slots, value=_keep(slots, _int(slot))),
            gr.update(choices=paragraphs, value=_keep(paragraphs, _int(block))),
            gr.update(choices=history, value=history[0][1] if history else None), message)


def _int(value: Any) -> Any:
    try:
        return int(value)
    except (TypeError, ValueError):
        return value


def wire_editing(services: Any, flags: JobFlags, owner: Callable[[Any], str],
                 c: dict[str, Any], e: dict[str, Any], i: dict[str, Any],
                 doc_state: Any, concurrency: int) -> None:
    """Connect the editing panel, the image tools and "apply outline" to their handlers;
    `owner(request)` says who the request comes from (ui/identity.py)."""
    outputs = [c["article"], doc_state, c["slot"], e["block"], e["history"], c["status"]]

    def doc_id(state: dict | None) -> str | None:
        return (state or {}).get("id")

    def version(state: dict | None) -> Any:
        return (state or {}).get("version")

    def edit(action: Callable[..., Document], message: str,
             show: Callable[[Document, Any], Any] | None = None) -> Callable[..., tuple]:
        """An event handler running `action(owner, doc_id, version, block, slot, *values)`
        -> Document; `show(doc, block)` picks the image slot to show afterwards."""
        # The request comes first: Gradio injects gr.Request only into positional parameters
        # before a *args, never into keyword-only ones after it.
        def handler(request: gr.Request, state: dict | None, block: Any, slot: Any,
                    *values: Any):
            try:
                doc = action(owner(request), doc_id(state), version(state), block, slot,
                             *values)
            except ComposerError as error:
                raise fail(error)
            return refreshed(services, doc, block, show(doc, block) if show else slot, message)
        return handler

    base = [doc_state, e["block"], c["slot"]]
    hidden = {"api_visibility": "undocumented"}

    # -- picking a paragraph: its text and the person's ratings --------------------------------
    def pick(state: dict | None, block: Any, request: gr.Request = None):
        if not doc_id(state) or block in (None, ""):
            return "", ""
        try:
            who = owner(request)
            doc = h.owned_document(services, doc_id(state), who)
            return (ed.picked_block(doc, block).text if block else "",
                    ed.rating_text(services, doc.id, who, block))
        except ComposerError:
            return "", ""

    e["block"].change(pick, [doc_state, e["block"]], [e["text"], e["rating"]],
                      **hidden)

    def on_state(state: dict | None, block: Any, request: gr.Request = None):
        """A document was written or opened: refresh the paragraph picker and history."""
        if not doc_id(state):
            return gr.skip(), gr.skip()
        try:
            doc = h.owned_document(services, doc_id(state), owner(request))
        except ComposerError:
            return gr.skip(), gr.skip()
        paragraphs, history = ed.paragraph_choices(doc), ed.history_choices(services, doc)
        return (gr.update(choices=paragraphs, value=_keep(paragraphs, _int(block))),
                gr.update(choices=history, value=history[0][1] if history else None))

    doc_state.change(on_state, [doc_state, e["block"]], [e["block"], e["history"]],
                     **hidden)

    # -- likes ---------------------------------------------------------------------------------
    def rater(value: int, whole: bool):
        def handler(state: dict | None, block: Any, request: gr.Request = None):
            try:
                who = owner(request)
                message = ed.rate(services, doc_id(state), who, None if whole else block, value)
                return ed.rating_text(services, doc_id(state), who, block), message
            except ComposerError as error:
                raise fail(error)
        return handler

    for name, value, whole in (("like", 1, False), ("dislike", -1, False),
                               ("like_doc", 1, True), ("dislike_doc", -1, True)):
        e[name].click(rater(value, whole), [doc_state, e["block"]],
                      [e["rating"], c["status"]], api_name=name)

    # -- model operations: preview (streamed), accept, cancel ------------------------------------
    @spaces_gpu
    def preview(state: dict | None, block: Any, op: str, instruction: str,
                request: gr.Request = None, progress=gr.Progress()):
        with stop_flag(flags, request) as flag:
            try:
                stream = ed.preview(services, doc_id(state), owner(request), op, block,
                                    instruction, flag)
                last = None
                for text, proposal, fraction in stream:
                    progress(fraction, desc="Writing the preview")
                    last = proposal or last
                    yield text, proposal, gr.skip()
            except ComposerError as error:
                raise fail(error)
        if flag.is_set():
            yield gr.skip(), gr.skip(), PREVIEW_STOPPED
        elif last is not None:
            yield gr.skip(), gr.skip(), ed.checks_status(last)

    e["preview"].click(preview, [doc_state, e["block"], e["op"], e["instruction"]],
                       [e["preview_text"], e["proposal"], c["status"]], concurrency_id="model",
                       concurrency_limit=concurrency, api_name="preview_edit")

    def stop(request: gr.Request):
        flags.stop(session_of(request))

    e["stop"].click(stop, None, None, queue=False, api_name="stop_edit")

    def accept(state: dict | None, block: Any, slot: Any, proposal: Any,
               text: str, request: gr.Request = None):
        try:
            doc = ed.accept(services, owner(request), proposal, text, version(state))
        except ComposerError as error:
            raise fail(error)
        return (*refreshed(services, doc, block, slot, "Accepted: undo reverts it"), "", None)

    e["accept"].click(accept, [*base, e["proposal"], e["preview_text"]],
                      [*outputs, e["preview_text"], e["proposal"]], api_name="accept_edit")
    e["cancel"].click(lambda: ("", None), None, [e["preview_text"], e["proposal"]],
                      queue=False, **hidden)

    # -- by hand -------------------------------------------------------------------------------
    def by_hand(action: Callable[..., Document]):
        return lambda who, doc, ver, block, slot, text: action(services, doc, who, block, text,
                                                               ver)

    e["save_text"].click(edit(by_hand(ed.save_text), "Saved"), [*base, e["text"]], outputs,
                         api_name="save_text")
    for side in ("before", "after"):
        e[f"insert_{side}"].click(edit(
            lambda who, doc, ver, block, slot, text, side=side: ed.insert_typed(
                services, doc, who, block, text, side, ver), f"Inserted {side}"),
            [*base, e["text"]], outputs, api_name=f"insert_{side}")
    for name, offset in (("up", -1), ("down", +1)):
        e[name].click(edit(lambda who, doc, ver, block, slot, offset=offset: ed.move_block(
            services, doc, who, block, offset, ver), "Moved"), base, outputs, **hidden)
        i[name].click(edit(lambda who, doc, ver, block, slot, offset=offset: ed.move_block(
            services, doc, who, slot, offset, ver), "Moved"), base, outputs, **hidden)
    e["delete"].click(edit(lambda who, doc, ver, block, slot: ed.delete_block(
        services, doc, who, block, ver), "Deleted: undo brings it back"), base, outputs,
        api_name="delete_block")
    i["delete"].click(edit(lambda who, doc, ver, block, slot: ed.delete_block(
        services, doc, who, slot, ver), "Deleted: undo brings it back"), base, outputs,
        api_name="delete_image")

    # -- history -------------------------------------------------------------------------------
    e["undo"].click(edit(lambda who, doc, ver, block, slot: ed.undo(services, doc, who, ver),
                         "Undone"), base, outputs, api_name="undo")
    e["redo"].click(edit(lambda who, doc, ver, block, slot: ed.redo(services, doc, who, ver),
                         "Redone"), base, outputs, api_name="redo")

    def view(state: dict | None, wanted: Any, request: gr.Request = None):
        try:
            return ed.view_version(services, doc_id(state), owner(request), wanted)
        except ComposerError as error:
            raise fail(error)

    e["view"].click(view, [doc_state, e["history"]], e["old"], api_name="view_version")
    e["restore"].click(edit(lambda who, doc, ver, block, slot, wanted: ed.restore_version(
        services, doc, who, wanted, ver), "Restored (one edit: undo reverts it)"),
        [*base, e["history"]], outputs, api_name="restore_version")

    # -- images --------------------------------------------------------------------------------
    def caption_of(state: dict | None, slot: Any, request: gr.Request = None):
        if not doc_id(state) or slot in (None, ""):
            return ""
        try:
            return ed.image_caption(services, doc_id(state), owner(request), slot)
        except ComposerError:
            return ""

    c["slot"].change(caption_of, [doc_state, c["slot"]], i["caption"], **hidden)
    i["search"].click(edit(lambda who, doc, ver, block, slot, caption: ed.search_again(
        services, doc, who, slot, caption, ver), "Searched again"), [*base, i["caption"]],
        outputs, concurrency_id="model", concurrency_limit=concurrency, api_name="search_again")
    i["use"].click(edit(lambda who, doc, ver, block, slot, file, caption: ed.upload_into_slot(
        services, doc, who, slot, file, caption, ver), "Your picture is in place"),
        [*base, i["file"], i["caption"]], outputs, api_name="use_upload")
    i["insert"].click(edit(lambda who, doc, ver, block, slot, caption: ed.insert_image(
        services, doc, who, block, caption, ver), "Image inserted", show=ed.image_after),
        [*base, i["caption"]],
        outputs, concurrency_id="model", concurrency_limit=concurrency, api_name="insert_image")

    @spaces_gpu
    def generate(state: dict | None, block: Any, slot: Any, caption: str,
                 seed: Any, request: gr.Request = None, progress=gr.Progress()):
        with stop_flag(flags, request) as flag:
            try:
                doc = ed.generate_into_slot(
                    services, doc_id(state), owner(request), slot, caption, seed,
                    version(state), progress=lambda step, total: progress(
                        step / max(total, 1), desc=f"Generating: step {step} of {total}"),
                    cancel=flag)
            except ComposerError as error:
                raise fail(error)
        return refreshed(services, doc, block, slot, "Generated")

    i["generate"].click(generate, [*base, i["caption"], i["seed"]], outputs,
                        concurrency_id="model", concurrency_limit=concurrency,
                        api_name="generate_image")

    def choose(state: dict | None, block: Any, slot: Any,
               event: gr.SelectData, request: gr.Request = None):
        try:
            doc = ed.choose_candidate(services, doc_id(state), owner(request), slot,
                                      event.index, version(state))
        except ComposerError as error:
            raise fail(error)
        return (*refreshed(services, doc, block, slot, "Image changed"),
                h.candidate_gallery(services, doc, slot))

    c["gallery"].select(choose, base, [*outputs, c["gallery"]], **hidden)

    # -- the outline after writing -------------------------------------------------------------
    @spaces_gpu
    def apply_outline(state: dict | None, block: Any, slot: Any, title: str,
                      rows: Any, request: gr.Request = None, progress=gr.Progress()):
        with stop_flag(flags, request) as flag:
            try:
                who = owner(request)
                doc, new = ed.apply_outline(services, doc_id(state), who, title, rows,
                                            version(state))
                yield refreshed(services, doc, block, slot,
                                f"Outline applied: writing {len(new)} new section(s)" if new
                                else "Outline applied")
                if not new:
                    return
                for html, status, fraction, doc in ed.write_new_sections(
                        services, doc, who, new, flag):
                    progress(fraction, desc=status or "Writing")
                    yield (html, state_of(doc), gr.skip(),
                           gr.skip(), gr.skip(), status)
                yield refreshed(services, doc, block, slot, "Done")  # the last one read
            except ComposerError as error:
                raise fail(error)

    c["apply_outline"].click(apply_outline, [*base, c["title"], c["outline"]], outputs,
                             concurrency_id="model", concurrency_limit=concurrency,
                             api_name="apply_outline")
