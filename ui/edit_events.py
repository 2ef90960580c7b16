"""The Edit tab's events: paragraph and image operations, likes, history, sharing, the outline.

`wire_editing` connects the components of ui/edit_panel.py to the plain functions of
ui/editing.py. Every action sends the version of the document the view shows; a stale one
(another tab saved first) is refused with a message and nothing is lost. Each change is
shown from the document the action returned (ui/doc_view.py): nothing is read again.
"""

from __future__ import annotations

from typing import Any, Callable

import gradio as gr

from composer.types import ComposerError, Document
from ui import editing as ed
from ui import handlers as h
from ui.article_view import render_document
from ui.compose_tab import running
from ui.doc_view import DocView
from ui.gpu import spaces_gpu
from ui.i18n import language_of, say
from ui.jobs import JobFlags, fail, session_of, state_of, stop_flag

QUIET = {"show_progress": "hidden"}  # the article is never greyed while it changes


def doc_id(state: dict | None) -> str | None:
    return (state or {}).get("id")


def version(state: dict | None) -> Any:
    return (state or {}).get("version")


def wire_editing(services: Any, flags: JobFlags, owner: Callable[[Any], str],
                 c: dict[str, Any], e: dict[str, Any], view: DocView,
                 concurrency: int) -> None:
    """Connect the Edit tab (`e`) and the Compose tab's "apply outline" (`c`) to their
    handlers; `owner(request)` says who the request comes from (ui/identity.py)."""
    i = e["image"]
    e["state"] = view.state
    outputs = [c["article"], *view.outputs, e["status"]]
    hidden = {"api_visibility": "undocumented"}
    model = {"concurrency_id": "model", "concurrency_limit": concurrency}

    def shown(doc: Document, request: Any, block: Any, slot: Any, message: str) -> tuple:
        """The values of `outputs` for `doc`, with `message` (a MESSAGES key) translated."""
        html = render_document(services, doc)
        language = language_of(request)
        return (html, *view.show(services, doc, language, block, slot, html=html),
                say(language, message) if message else "")

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
            return shown(doc, request, block, show(doc, block) if show else slot, message)
        return handler

    base = [view.state, e["block"], i["slot"]]

    # -- picking a paragraph: its text and the person's ratings --------------------------------
    def pick(state: dict | None, block: Any, request: gr.Request = None):
        if not doc_id(state) or block in (None, ""):
            return "", ""
        try:
            who = owner(request)
            doc = h.owned_document(services, doc_id(state), who)
            return (ed.picked_block(doc, block).text,
                    ed.rating_text(services, doc.id, who, block, language_of(request)))
        except ComposerError:
            return "", ""

    e["block"].change(pick, [view.state, e["block"]], [e["text"], e["rating"]], **hidden)

    # -- likes ---------------------------------------------------------------------------------
    def rater(value: int, whole: bool):
        def handler(state: dict | None, block: Any, request: gr.Request = None):
            try:
                who, language = owner(request), language_of(request)
                message = ed.rate(services, doc_id(state), who, None if whole else block, value,
                                  language)
                return ed.rating_text(services, doc_id(state), who, block, language), message
            except ComposerError as error:
                raise fail(error)
        return handler

    for name, value, whole in (("like", 1, False), ("dislike", -1, False),
                               ("like_doc", 1, True), ("dislike_doc", -1, True)):
        e[name].click(rater(value, whole), [view.state, e["block"]],
                      [e["rating"], e["status"]], api_name=name)

    _wire_preview(services, flags, owner, e, outputs, shown, model)

    # -- by hand -------------------------------------------------------------------------------
    def by_hand(action: Callable[..., Document]):
        return lambda who, doc, ver, block, slot, text: action(services, doc, who, block, text,
                                                               ver)

    e["save_text"].click(edit(by_hand(ed.save_text), "saved"), [*base, e["text"]], outputs,
                         api_name="save_text", **QUIET)
    for side in ("before", "after"):
        e[f"insert_{side}"].click(edit(
            lambda who, doc, ver, block, slot, text, side=side: ed.insert_typed(
                services, doc, who, block, text, side, ver), "inserted"),
            [*base, e["text"]], outputs, api_name=f"insert_{side}", **QUIET)
    for name, offset in (("up", -1), ("down", +1)):
        e[name].click(edit(lambda who, doc, ver, block, slot, offset=offset: ed.move_block(
            services, doc, who, block, offset, ver), "moved"), base, outputs, **hidden, **QUIET)
        i[name].click(edit(lambda who, doc, ver, block, slot, offset=offset: ed.move_block(
            services, doc, who, slot, offset, ver), "moved"), base, outputs, **hidden, **QUIET)
    e["delete"].click(edit(lambda who, doc, ver, block, slot: ed.delete_block(
        services, doc, who, block, ver), "deleted"), base, outputs, api_name="delete_block",
        **QUIET)
    i["delete"].click(edit(lambda who, doc, ver, block, slot: ed.delete_block(
        services, doc, who, slot, ver), "deleted"), base, outputs, api_name="delete_image",
        **QUIET)

    # -- history -------------------------------------------------------------------------------
    e["undo"].click(edit(lambda who, doc, ver, block, slot: ed.undo(services, doc, who, ver),
                         "undone"), base, outputs, api_name="undo", **QUIET)
    e["redo"].click(edit(lambda who, doc, ver, block, slot: ed.redo(services, doc, who, ver),
                         "redone"), base, outputs, api_name="redo", **QUIET)

    def view_old(state: dict | None, wanted: Any, request: gr.Request = None):
        try:
            return ed.view_version(services, doc_id(state), owner(request), wanted)
        except ComposerError as error:
            raise fail(error)

    e["view"].click(view_old, [view.state, e["history"]], e["old"], api_name="view_version")
    e["restore"].click(edit(lambda who, doc, ver, block, slot, wanted: ed.restore_version(
        services, doc, who, wanted, ver), "restored"),
        [*base, e["history"]], outputs, api_name="restore_version", **QUIET)

    _wire_images(services, flags, owner, e, outputs, base, edit, shown, model)
    _wire_document(services, owner, c, e, view, outputs, shown)
    _wire_apply_outline(services, flags, owner, c, view, base, shown, model)


def _wire_preview(services: Any, flags: JobFlags, owner: Callable[[Any], str],
                  e: dict[str, Any], outputs: list[Any], shown: Callable[..., tuple],
                  model: dict[str, Any]) -> None:
    """Preview (streamed) with Stop shown while it runs; Accept and Cancel once it is there."""
    hidden = {"api_visibility": "undocumented"}
    buttons = [e["preview"], e["stop"], e["accept"], e["cancel"]]

    def busy(request: gr.Request):
        flags.arm(session_of(request))  # a Stop pressed while it waits in line stops it
        return (gr.update(interactive=False), gr.update(visible=True),
                gr.update(interactive=False), gr.update(interactive=False),
                say(language_of(request), "preview_running"))

    def idle(proposal: Any):
        ready = bool(proposal)
        return (gr.update(interactive=True), gr.update(visible=False),
                gr.update(interactive=ready), gr.update(interactive=ready))

    @spaces_gpu
    def preview(state: dict | None, block: Any, op: str, instruction: str,
                request: gr.Request = None):
        language = language_of(request)
        with stop_flag(flags, request) as flag:
            try:
                stream = ed.preview(services, doc_id(state), owner(request), op, block,
                                    instruction, flag)
                last = None
                for text, proposal, fraction in stream:
                    last = proposal or last
                    line = f'<progress value="{fraction:.3f}" max="1"></progress> ' + \
                        say(language, "preview_running")
                    yield text, proposal, line
            except ComposerError as error:
                raise fail(error)
        if flag.is_set():
            yield gr.skip(), gr.skip(), say(language, "preview_stopped")
        elif last is not None:
            yield gr.skip(), gr.skip(), ed.checks_status(last, language)

    e["preview"].click(busy, None, [*buttons, e["status"]], queue=False, **hidden).then(
        preview, [e["state"], e["block"], e["op"], e["instruction"]],
        [e["preview_text"], e["proposal"], e["status"]], api_name="preview_edit", **model,
        **QUIET).then(idle, e["proposal"], buttons, queue=False, **hidden)

    def stop(request: gr.Request):
        flags.stop(session_of(request))

    e["stop"].click(stop, None, None, queue=False, api_name="stop_edit")

    def accept(state: dict | None, block: Any, slot: Any, proposal: Any,
               text: str, request: gr.Request = None):
        try:
            doc = ed.accept(services, owner(request), proposal, text, version(state))
        except ComposerError as error:
            raise fail(error)
        return (*shown(doc, request, block, slot, "accepted"), "", None,
                gr.update(interactive=False), gr.update(interactive=False))

    e["accept"].click(accept, [e["state"], e["block"], e["image"]["slot"], e["proposal"],
                               e["preview_text"]],
                      [*outputs, e["preview_text"], e["proposal"], e["accept"], e["cancel"]],
                      api_name="accept_edit", **QUIET)
    e["cancel"].click(lambda: ("", None, gr.update(interactive=False),
                               gr.update(interactive=False)), None,
                      [e["preview_text"], e["proposal"], e["accept"], e["cancel"]],
                      queue=False, **hidden)


def _wire_images(services: Any, flags: JobFlags, owner: Callable[[Any], str],
                 e: dict[str, Any], outputs: list[Any], base: list[Any],
                 edit: Callable[..., Callable[..., tuple]], shown: Callable[..., tuple],
                 model: dict[str, Any]) -> None:
    """The image tools: the picked image's candidates and caption, and what changes it."""
    i = e["image"]
    hidden = {"api_visibility": "undocumented"}

    def picked_image(state: dict | None, slot: Any, request: gr.Request = None):
        if not doc_id(state) or slot in (None, ""):
            return "", []
        try:
            doc = h.owned_document(services, doc_id(state), owner(request))
            return (ed.picked_block(doc, slot).caption,
                    h.candidate_gallery(services, doc, slot))
        except ComposerError:
            return "", []

    i["slot"].change(picked_image, [e["state"], i["slot"]], [i["caption"], i["gallery"]],
                     api_name="candidates")
    i["search"].click(edit(lambda who, doc, ver, block, slot, caption: ed.search_again(
        services, doc, who, slot, caption, ver), "searched"), [*base, i["caption"]],
        outputs, api_name="search_again", **model, **QUIET)
    i["use"].click(edit(lambda who, doc, ver, block, slot, file, caption: ed.upload_into_slot(
        services, doc, who, slot, file, caption, ver), "uploaded"),
        [*base, i["file"], i["caption"]], outputs, api_name="use_upload", **QUIET)
    i["insert"].click(edit(lambda who, doc, ver, block, slot, caption: ed.insert_image(
        services, doc, who, block, caption, ver), "image_inserted", show=ed.image_after),
        [*base, i["caption"]], outputs, api_name="insert_image", **model, **QUIET)

    @spaces_gpu
    def generate(state: dict | None, block: Any, slot: Any, caption: str,
                 seed: Any, request: gr.Request = None, progress=gr.Progress()):
        language = language_of(request)
        with stop_flag(flags, request) as flag:
            try:
                doc = ed.generate_into_slot(
                    services, doc_id(state), owner(request), slot, caption, seed,
                    version(state), progress=lambda step, total: progress(
                        step / max(total, 1),
                        desc=say(language, "generating", step=step, total=total)),
                    cancel=flag)
            except ComposerError as error:
                raise fail(error)
        return shown(doc, request, block, slot, "generated")

    # the progress bar shows on the status line only, not over the article; Stop shows
    # while it runs
    def busy(request: gr.Request):
        flags.arm(session_of(request))
        return gr.update(interactive=False), gr.update(visible=True)

    def idle():
        return gr.update(interactive=True), gr.update(visible=False)

    def stop(request: gr.Request):
        flags.stop(session_of(request))

    quick = {"queue": False, **hidden}
    i["generate"].click(busy, None, [i["generate"], i["stop"]], **quick).then(
        generate, [*base, i["caption"], i["seed"]], outputs, api_name="generate_image",
        show_progress_on=[e["status"]], concurrency_id="image",
        concurrency_limit=services.settings.image_concurrency).then(
            idle, None, [i["generate"], i["stop"]], **quick)
    i["stop"].click(stop, None, None, **quick)

    def choose(state: dict | None, block: Any, slot: Any,
               event: gr.SelectData, request: gr.Request = None):
        try:
            doc = ed.choose_candidate(services, doc_id(state), owner(request), slot,
                                      event.index, version(state))
        except ComposerError as error:
            raise fail(error)
        return (*shown(doc, request, block, slot, "image_changed"),
                h.candidate_gallery(services, doc, slot))

    i["gallery"].select(choose, base, [*outputs, i["gallery"]], **hidden, **QUIET)


def _wire_document(services: Any, owner: Callable[[Any], str], c: dict[str, Any],
                   e: dict[str, Any], view: DocView, outputs: list[Any],
                   shown: Callable[..., tuple]) -> None:
    """Share, stop sharing, duplicate and delete the open document."""
    def share(state: dict | None, request: gr.Request = None):
        try:
            base = str(request.request.base_url) if request and request.request else ""
            link = h.share_link(services, doc_id(state), owner(request), base)
        except ComposerError as error:
            raise fail(error)
        return link, gr.update(interactive=True), doc_id(state)

    def revoke(state: dict | None, request: gr.Request = None):
        try:
            h.revoke_link(services, doc_id(state), owner(request))
        except ComposerError as error:
            raise fail(error)
        return "", gr.update(interactive=False), None

    link = [e["link"], e["revoke"], e["shared_id"]]
    e["share"].click(share, [view.state], link, api_name="share")
    e["revoke"].click(revoke, [view.state], link, api_name="revoke")

    def other_document(state: dict | None, shared_id: str | None):
        # a new version of the shared document keeps its link; another document has none yet
        if shared_id and doc_id(state) == shared_id:
            return gr.skip(), gr.skip(), gr.skip()
        return "", gr.update(interactive=False), None

    view.state.change(other_document, [view.state, e["shared_id"]], link, queue=False,
                      api_visibility="undocumented")

    def duplicate(state: dict | None, request: gr.Request = None):
        try:
            copy = h.duplicate_document(services, doc_id(state), owner(request))
        except ComposerError as error:
            raise fail(error)
        return shown(copy, request, None, None, "")[:-1] + (
            say(language_of(request), "duplicated", title=copy.title),)

    e["duplicate"].click(duplicate, [view.state], outputs,
                         api_name="duplicate", **QUIET)

    def delete(state: dict | None, confirmed: bool, request: gr.Request = None):
        try:
            doc = h.owned_document(services, doc_id(state), owner(request))
            h.delete_document(services, doc.id, owner(request), confirmed)
        except ComposerError as error:
            gr.Warning(str(error))  # a toast; the tick box stays usable
            return (gr.skip(),) * (len(outputs) + 1)
        gr.Info(say(language_of(request), "deleted_document", title=doc.title))
        return ("", *view.clear(), "", False)

    e["delete_doc"].click(delete, [view.state, e["confirm"]], [*outputs, e["confirm"]],
                          api_name="delete", **QUIET)


def _wire_apply_outline(services: Any, flags: JobFlags, owner: Callable[[Any], str],
                        c: dict[str, Any], view: DocView, base: list[Any],
                        shown: Callable[..., tuple], model: dict[str, Any]) -> None:
    """"Apply to the open article" under the Compose tab's outline: new sections are written
    in place, streaming into the Compose tab's article."""
    outputs = [c["article"], *view.outputs, c["status"]]

    @spaces_gpu
    def apply_outline(state: dict | None, block: Any, slot: Any, title: str,
                      rows: Any, request: gr.Request = None):
        language = language_of(request)
        with stop_flag(flags, request) as flag:
            try:
                who = owner(request)
                doc, new = ed.apply_outline(services, doc_id(state), who, title, rows,
                                            version(state))
                if not new:
                    yield shown(doc, request, block, slot, "outline_applied")
                    return
                yield shown(doc, request, block, slot, "")[:-1] + (
                    say(language, "outline_applied_new", count=len(new)),)
                skip = (gr.skip(),) * (len(view.outputs) - 2)  # all but the article and state
                for html, status, fraction, doc in ed.write_new_sections(
                        services, doc, who, new, flag):
                    line = f'<progress value="{fraction:.3f}" max="1"></progress> {status}'
                    yield (html, html, state_of(doc), *skip, line)
                yield shown(doc, request, block, slot, "stage_done")  # the last one read
            except ComposerError as error:
                raise fail(error)

    buttons = [c["plan"], c["write"], c["stop"]]

    def busy(request: gr.Request):
        flags.arm(session_of(request))  # a Stop pressed while it waits in line stops it
        return running(True)

    hidden = {"api_visibility": "undocumented", "queue": False}
    c["apply_outline"].click(busy, None, buttons, **hidden).then(
        apply_outline, [*base, c["title"], c["outline"]], outputs, api_name="apply_outline",
        **model, **QUIET).then(lambda: running(False), None, buttons, **hidden)
