"""The Gradio layout: components and the wiring of events to the handlers in ui/handlers.py.

Per-browser state only: who a request comes from is its signed owner cookie or login
(ui/identity.py, read from the gr.Request of every handler), the open document lives in a
gr.State, and the stop flags of running compositions in a JobFlags object that belongs to
this Blocks (keyed by Gradio's session hash). Model work goes through Gradio's
queue under one concurrency id, so people wait in line instead of crashing each other.
"""

from __future__ import annotations

import threading
from typing import Any, Callable

import gradio as gr

from composer.references import reference_note
from composer.render import ARTICLE_CSS
from composer.types import ComposerError, Document
from models.registry import spaces_gpu
from ui import edit_layout as el
from ui import handlers as h
from ui import library as lh
from ui.i18n import t
from ui.identity import Identities

OwnerOf = Callable[[Any], str]  # gr.Request -> owner (Identities.owner_of)
IMAGE_CHOICES = ["auto"] + [str(n) for n in range(1, 16)]
CSS = ARTICLE_CSS + """
#xc-heading p{font-size:1.6rem;font-weight:700;margin:0}
#xc-article{min-height:12rem;padding:1rem 0}
#xc-status{min-height:1.5rem;color:#555}
"""


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


def _fail(error: Exception) -> gr.Error:
    return gr.Error(str(error), print_exception=False)


def build_ui(services: Any, identities: Identities, model_concurrency: int = 1,
             hf_login: bool = False) -> gr.Blocks:
    """The whole browser UI; `identities` tells every handler who the request comes from
    (the signed owner cookie or the login, ui/identity.py).

    hf_login adds "Sign in with Hugging Face" (on a Space): signed-in people own their
    documents by account, across browsers.
    """
    flags = JobFlags()
    owner_of = identities.owner_of
    with gr.Blocks(title="Interleaved Composer") as demo:
        doc_state = gr.State(None)  # {"id": ..., "version": ...} of the open document
        gr.Markdown(t("title"), elem_id="xc-heading")
        gr.Markdown(t("subtitle"))
        if hf_login:
            gr.LoginButton()
        with gr.Tabs() as tabs:
            with gr.Tab(t("compose"), id="compose"):
                c = _compose_tab(services.settings)
            with gr.Tab(t("documents"), id="documents") as documents_tab:
                d = _documents_tab()
                d["tab"] = documents_tab
            with gr.Tab(t("library"), id="library") as library_tab:
                lib = _library_tab()
                lib["tab"] = library_tab

        def start_session(request: gr.Request):
            # The owner (and the login the image routes accept, see Identities.bind) is
            # known from the first call: fill the image filters with what they can see.
            try:
                sources, licenses = lh.filter_choices(services, owner_of(request))
            except ComposerError as error:
                gr.Warning(str(error))
                return gr.skip(), gr.skip()
            return gr.update(choices=licenses), gr.update(choices=sources)

        demo.load(start_session, None, [c["image_license"], c["image_source"]],
                  api_visibility="undocumented")
        _wire_compose(services, flags, c, owner_of, doc_state, model_concurrency)
        _wire_documents(services, c, d, owner_of, doc_state, tabs)
        _wire_library(services, lib, owner_of)
    demo.css = CSS
    return demo


def _compose_tab(settings: Any) -> dict[str, Any]:
    c: dict[str, Any] = {}
    c["instruction"] = gr.Textbox(label=t("instruction"), placeholder=t("instruction_hint"),
                                  lines=2, elem_id="xc-instruction")
    with gr.Accordion(t("material"), open=False):
        c["material"] = gr.Textbox(label=t("material"), placeholder=t("material_hint"), lines=6)
        c["references"] = gr.File(label=t("reference_images"), file_count="multiple",
                                  file_types=["image"], elem_id="xc-references")
        gr.Markdown(reference_note(settings), elem_id="xc-references-note")
    with gr.Row():
        c["language"] = gr.Radio(["en", "zh"], value="en", label=t("language"))
        # A number field, not a slider: a slider silently moves 5 to its minimum, while
        # this sends what was typed and the check names the limit.
        c["words"] = gr.Number(800, precision=0, step=50, label=t("words"), elem_id="xc-words")
        c["images"] = gr.Dropdown(IMAGE_CHOICES, value="auto", label=t("images"))
        c["text_only"] = gr.Checkbox(False, label=t("text_only"))
        c["seed"] = gr.Number(0, precision=0, label=t("seed"), minimum=0)
    with gr.Accordion(t("decoding"), open=False):
        with gr.Row():
            c["sample"] = gr.Checkbox(False, label=t("sample"))
            c["temperature"] = gr.Slider(0.05, 2.0, value=0.7, step=0.05, label=t("temperature"))
            c["top_p"] = gr.Slider(0.05, 1.0, value=0.8, step=0.05, label=t("top_p"))
            c["repetition_penalty"] = gr.Slider(1.0, 2.0, value=1.1, step=0.05,
                                                label=t("repetition_penalty"))
            c["beams"] = gr.Slider(1, 6, value=1, step=1, label=t("beams"))
            c["candidates"] = gr.Slider(1, 8, value=3, step=1, label=t("candidates"),
                                        info=t("candidates_info"))
            c["decoding"] = gr.Radio(["default", "opera"], value="default",
                                     label=t("decoding_method"), info=t("decoding_info"))
            c["max_tokens"] = gr.Slider(64, 4096, value=1024, step=64, label=t("max_tokens"))
            c["selection"] = gr.Radio(["score", "model"], value="score", label=t("selection"))
    with gr.Accordion(t("image_filters"), open=False):
        with gr.Row():
            c["image_license"] = gr.Dropdown([lh.ANY], value=lh.ANY, label=t("image_license"),
                                             allow_custom_value=True, elem_id="xc-image-license")
            c["image_source"] = gr.Dropdown([lh.ANY], value=lh.ANY, label=t("image_source"),
                                            allow_custom_value=True, elem_id="xc-image-source")
    with gr.Row():
        c["plan"] = gr.Button(t("plan"), elem_id="xc-plan")
        c["write"] = gr.Button(t("write"), variant="primary", elem_id="xc-write")
        c["stop"] = gr.Button(t("stop"), variant="stop", elem_id="xc-stop")
    with gr.Accordion(t("outline"), open=True):
        c["title"] = gr.Textbox(label=t("article_title"), elem_id="xc-title")
        c["outline"] = gr.Dataframe(headers=h.OUTLINE_HEADERS, datatype=["str", "str", "number"],
                                    column_count=(3, "fixed"), row_count=(0, "dynamic"),
                                    interactive=True, elem_id="xc-outline")
        with gr.Row():
            c["row"] = gr.Number(1, precision=0, label=t("row"), minimum=1)
            c["up"] = gr.Button(t("up"), size="sm")
            c["down"] = gr.Button(t("down"), size="sm")
            c["remove"] = gr.Button(t("remove"), size="sm")
            c["add"] = gr.Button(t("add"), size="sm")
            c["clear"] = gr.Button(t("clear_outline"), size="sm")
        c["apply_outline"] = gr.Button(t("apply_outline"), size="sm", elem_id="xc-apply-outline")
    c["status"] = gr.Markdown(elem_id="xc-status")
    c["article"] = gr.HTML(elem_id="xc-article")
    with gr.Row():
        c["share"] = gr.Button(t("share"), size="sm", elem_id="xc-share")
        c["revoke"] = gr.Button(t("revoke"), size="sm", elem_id="xc-revoke")
        c["link"] = gr.Textbox(label=t("share_link"), interactive=False, elem_id="xc-link",
                               buttons=["copy"])
    c["edit"] = el.edit_panel(settings)
    with gr.Accordion(t("images_panel"), open=True):
        c["slot"] = gr.Dropdown([], label=t("slot"), elem_id="xc-slot")
        c["gallery"] = gr.Gallery(columns=4, height=220, allow_preview=False,
                                  elem_id="xc-gallery")
        c["image_tools"] = el.image_tools(settings)
    return c


def _documents_tab() -> dict[str, Any]:
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


OPTION_KEYS = ["language", "words", "images", "text_only", "seed", "sample", "temperature",
               "top_p", "repetition_penalty", "beams", "max_tokens", "selection",
               "image_license", "image_source", "candidates", "decoding"]


def _options(values: list[Any]) -> h.ComposeOptions:
    return h.ComposeOptions(**dict(zip(OPTION_KEYS, values)))


def _doc_outputs(services: Any, doc: Document) -> tuple[Any, ...]:
    """What the compose view shows for an open document: html, state, slot choices, link."""
    slots = h.image_slots(doc)
    state = {"id": doc.id, "version": doc.version}
    return (h.render_document(services, doc), state,
            gr.update(choices=slots, value=slots[0][1] if slots else None))


def _wire_compose(services: Any, flags: JobFlags, c: dict[str, Any], owner_of: OwnerOf,
                  doc_state: Any, concurrency: int) -> None:
    options = [c[key] for key in OPTION_KEYS]
    form = [c["instruction"], c["material"], c["references"], c["title"], c["outline"],
            *options]
    hidden = {"api_visibility": "undocumented"}

    # Handlers take the request first: Gradio injects gr.Request only into positional
    # parameters before a *args. Bad input is answered by `check` at once: it runs in its own
    # unlimited concurrency group (queued, so its error is a toast with the message, which a
    # queue=False event does not show), and only the model work behind it waits in line.
    checked = {"concurrency_id": "check", "concurrency_limit": None, **hidden}

    def check(request: gr.Request, instruction: str, material: str, references: Any,
              title: str, outline_rows: Any, *values: Any):
        try:
            owner_of(request)
            h.check_form(instruction, material, references, title, outline_rows,
                         _options(list(values)), services)
        except ComposerError as error:
            raise _fail(error)
        flags.arm(el.session_of(request))
        return h.WAITING

    @spaces_gpu
    def plan(request: gr.Request, instruction: str, material: str, references: Any,
             title: str, outline_rows: Any, *values: Any):
        with el.stop_flag(flags, request) as flag:
            if flag.is_set():
                yield gr.skip(), gr.skip(), h.STOPPED_BEFORE_START
                return
            try:
                material, images = h.reference_material(services, material, references)
                rows = outline_rows
                # the rows appear as the model plans them, then with their word budgets
                for title, rows in h.plan_outline_stream(services, instruction, material,
                                                         _options(list(values)), images,
                                                         cancel=flag):
                    yield title, rows, h.PLANNING
            except ComposerError as error:
                raise _fail(error)
        yield title, rows, h.STOPPED_PLAN if flag.is_set() else ""

    c["plan"].click(check, form, c["status"], **checked).success(
        plan, form, [c["title"], c["outline"], c["status"]], concurrency_id="model",
        concurrency_limit=concurrency, api_name="plan")

    @spaces_gpu
    def write(request: gr.Request, instruction: str, material: str, references: Any,
              title: str, outline_rows: Any, *values: Any):
        progress = gr.Progress()
        try:
            owner = owner_of(request)
            material, images = h.reference_material(services, material, references)
            compose_request = h.build_request(instruction, material, _options(list(values)),
                                              images)
            edited = h.outline_from_rows(title, outline_rows)
            outline = edited if edited.sections else None
        except ComposerError as error:
            raise _fail(error)
        with el.stop_flag(flags, request) as flag:
            if flag.is_set():  # stopped while it waited in the queue
                yield gr.skip(), h.STOPPED_BEFORE_START, gr.skip(), gr.skip()
                return
            try:
                for update in h.write_article(services, compose_request, outline, owner, flag):
                    progress(update.fraction, desc=update.status)
                    doc = update.document
                    slots = h.image_slots(doc)
                    first = slots[0][1] if slots and update.finished else None
                    yield (update.html, update.status, {"id": doc.id, "version": doc.version},
                           gr.update(choices=slots, value=first))
            except ComposerError as error:
                raise _fail(error)

    c["write"].click(check, form, c["status"], **checked).success(
        write, form, [c["article"], c["status"], doc_state, c["slot"]],
        concurrency_id="model", concurrency_limit=concurrency, api_name="write")

    def stop(request: gr.Request):
        flags.stop(el.session_of(request))

    c["stop"].click(stop, None, None, queue=False, api_name="stop")

    _wire_outline_editing(c)
    _wire_sharing_and_images(services, c, owner_of, doc_state)
    el.wire_editing(services, flags, owner_of, c, c["edit"], c["image_tools"], doc_state,
                    concurrency)


def _wire_outline_editing(c: dict[str, Any]) -> None:
    def move(rows: Any, number: Any, offset: int):
        try:
            return h.move_row(rows, number, offset)
        except ComposerError as error:
            raise _fail(error)

    def remove(rows: Any, number: Any):
        rows = h.table_rows(rows)
        index = int(number or 0) - 1
        if not 0 <= index < len(rows):
            raise gr.Error(f"row {index + 1} does not exist: rows are 1..{len(rows)}")
        return rows[:index] + rows[index + 1:]

    def add(rows: Any):
        return h.table_rows(rows) + [["New section", "", 200]]

    hidden = {"api_visibility": "undocumented", "queue": False}
    c["up"].click(lambda rows, n: move(rows, n, -1), [c["outline"], c["row"]], c["outline"],
                  **hidden)
    c["down"].click(lambda rows, n: move(rows, n, +1), [c["outline"], c["row"]], c["outline"],
                    **hidden)
    c["remove"].click(remove, [c["outline"], c["row"]], c["outline"], **hidden)
    c["add"].click(add, c["outline"], c["outline"], **hidden)
    c["clear"].click(lambda: ("", []), None, [c["title"], c["outline"]], **hidden)


def _wire_sharing_and_images(services: Any, c: dict[str, Any], owner_of: OwnerOf,
                             doc_state: Any) -> None:
    def share(state: dict | None, request: gr.Request = None):
        try:
            owner = owner_of(request)
            base = str(request.request.base_url) if request and request.request else ""
            return h.share_link(services, (state or {}).get("id"), owner, base)
        except ComposerError as error:
            raise _fail(error)

    def revoke(state: dict | None, request: gr.Request = None):
        try:
            h.revoke_link(services, (state or {}).get("id"), owner_of(request))
            return ""
        except ComposerError as error:
            raise _fail(error)

    def show_candidates(state: dict | None, slot: Any, request: gr.Request = None):
        if not state or slot is None:
            return []
        try:
            doc = h.owned_document(services, state["id"], owner_of(request))
            return h.candidate_gallery(services, doc, slot)
        except ComposerError as error:
            raise _fail(error)

    c["share"].click(share, [doc_state], c["link"], api_name="share")
    c["revoke"].click(revoke, [doc_state], c["link"], api_name="revoke")
    c["slot"].change(show_candidates, [doc_state, c["slot"]], c["gallery"],
                     api_name="candidates")


def _wire_documents(services: Any, c: dict[str, Any], d: dict[str, Any], owner_of: OwnerOf,
                    doc_state: Any, tabs: Any) -> None:
    def refresh(request: gr.Request = None):
        try:
            return h.list_documents(services, owner_of(request))
        except ComposerError as error:
            raise _fail(error)

    def select(event: gr.SelectData, rows: Any):
        rows = h.table_rows(rows)
        return rows[event.index[0]][4] if rows and event.index else ""

    def open_doc(doc_id: str, request: gr.Request = None):
        try:
            doc = h.owned_document(services, doc_id.strip(), owner_of(request))
        except ComposerError as error:
            raise _fail(error)
        html, state, slots = _doc_outputs(services, doc)
        return html, state, slots, doc.title, "", gr.Tabs(selected="compose")

    def duplicate(doc_id: str, request: gr.Request = None):
        try:
            owner = owner_of(request)
            copy = h.duplicate_document(services, doc_id.strip(), owner)
            return h.list_documents(services, owner), copy.id
        except ComposerError as error:
            raise _fail(error)

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


def _library_tab() -> dict[str, Any]:
    lib: dict[str, Any] = {}
    with gr.Row():
        lib["search"] = gr.Textbox(label=t("search_captions"), elem_id="xc-lib-search", scale=3)
        lib["source"] = gr.Dropdown([lh.ANY], value=lh.ANY, label=t("source"), scale=2)
        lib["license"] = gr.Dropdown([lh.ANY], value=lh.ANY, label=t("license"), scale=2)
        lib["page"] = gr.Number(1, precision=0, minimum=1, label=t("page"), scale=1)
        lib["refresh"] = gr.Button(t("refresh"), size="sm", scale=1, elem_id="xc-lib-refresh")
    lib["summary"] = gr.Markdown(elem_id="xc-lib-summary")
    lib["ids"] = gr.State([])
    lib["selected"] = gr.State(None)
    with gr.Row():
        with gr.Column(scale=3):
            lib["gallery"] = gr.Gallery(label=t("library_images"), columns=5, height=520,
                                        allow_preview=False, elem_id="xc-lib-gallery")
        with gr.Column(scale=2):
            lib["preview"] = gr.Image(label=t("selected_image"), interactive=False, height=240,
                                      elem_id="xc-lib-preview")
            lib["caption"] = gr.Textbox(label=t("caption"), lines=3, elem_id="xc-lib-caption")
            lib["license_text"] = gr.Textbox(label=t("license"), elem_id="xc-lib-license")
            lib["attribution"] = gr.Textbox(label=t("attribution"), elem_id="xc-lib-attribution")
            lib["notes"] = gr.Markdown(elem_id="xc-lib-notes")
            with gr.Row():
                lib["save"] = gr.Button(t("save"), variant="primary", size="sm",
                                        elem_id="xc-lib-save")
                lib["confirm"] = gr.Checkbox(False, label=t("confirm_delete"),
                                             elem_id="xc-lib-confirm")
                lib["delete"] = gr.Button(t("delete"), variant="stop", size="sm",
                                          elem_id="xc-lib-delete")
    with gr.Accordion(t("upload"), open=False):
        lib["files"] = gr.File(label=t("upload_files"), file_count="multiple",
                               file_types=["image"], elem_id="xc-lib-files")
        with gr.Row():
            lib["upload_caption"] = gr.Textbox(label=t("upload_caption"), scale=3)
            lib["upload_license"] = gr.Textbox(label=t("license"), scale=1)
            lib["upload_attribution"] = gr.Textbox(label=t("attribution"), scale=2)
        with gr.Row():
            lib["keep"] = gr.Checkbox(False, label=t("keep_near_duplicates"))
            lib["upload"] = gr.Button(t("add_to_library"), variant="primary",
                                      elem_id="xc-lib-upload")
        lib["upload_result"] = gr.Markdown(elem_id="xc-lib-upload-result")
    lib["caption_hint"] = gr.Markdown(elem_id="xc-lib-caption-hint")
    with gr.Row():
        lib["caption_all"] = gr.Button(t("caption_all"), size="sm", elem_id="xc-lib-caption-all")
        lib["caption_status"] = gr.Markdown(elem_id="xc-lib-caption-status")
    lib["timer"] = gr.Timer(2.0, active=False)
    return lib


_EMPTY_DETAILS = (None, None, "", "", "", "", False)


def _wire_library(services: Any, lib: dict[str, Any], owner_of: OwnerOf) -> None:
    def page(search: str, source: str, license: str, number: Any, request: gr.Request = None):
        try:
            owner = owner_of(request)
            shown = lh.library_page(services, owner, search, source, license, number)
            sources, licenses = lh.filter_choices(services, owner)
        except ComposerError as error:
            raise _fail(error)
        return (gr.Gallery(value=shown.items, selected_index=None), shown.ids, shown.summary,
                shown.page,
                gr.update(choices=sources), gr.update(choices=licenses))

    def select(ids: list[str], event: gr.SelectData,
               request: gr.Request = None):
        index = event.index if isinstance(event.index, int) else None
        if index is None or not 0 <= index < len(ids or []):
            return _EMPTY_DETAILS
        return details(ids[index], request)

    def details(image_id: str | None, request: gr.Request | None):
        try:
            shown = lh.image_details(services, image_id, owner_of(request))
        except ComposerError as error:
            raise _fail(error)
        image = shown.image
        return (image.id, str(services.images.thumbnail(image.id, 512)), image.caption,
                image.license, image.attribution, shown.notes, False)

    def save(image_id: str | None, caption: str, license: str,
             attribution: str, request: gr.Request = None):
        try:
            lh.save_image(services, image_id, owner_of(request), caption, license,
                          attribution)
        except ComposerError as error:
            raise _fail(error)
        gr.Info("Saved: the new caption is searchable now.")
        return details(image_id, request)

    def delete(image_id: str | None, confirmed: bool,
               request: gr.Request = None):
        try:
            lh.delete_image(services, image_id, owner_of(request), confirmed)
        except ComposerError as error:
            gr.Warning(str(error))
            return (gr.skip(),) * len(_EMPTY_DETAILS)
        return _EMPTY_DETAILS

    def upload(files: Any, caption: str, license: str, attribution: str,
               keep: bool, request: gr.Request = None, progress=gr.Progress()):
        try:
            return lh.upload_images(services, owner_of(request), files, caption, license,
                                    attribution, keep,
                                    progress=lambda share, text: progress(share, desc=text)), None
        except ComposerError as error:
            raise _fail(error)

    def caption_hint():
        worker = services.captions
        return ("**Captions:** " + lh.caption_hint(services), gr.update(visible=worker.configured),
                lh.caption_status_text(worker.status()) if worker.configured else "")

    def start_captioning():
        worker = services.captions
        if not worker.start():
            gr.Info("Captioning is already running.")
        return lh.caption_status_text(worker.status()), gr.Timer(active=True)

    def poll():
        status = services.captions.status()
        return lh.caption_status_text(status), gr.Timer(active=status.running)

    filters = [lib["search"], lib["source"], lib["license"], lib["page"]]
    page_outputs = [lib["gallery"], lib["ids"], lib["summary"], lib["page"], lib["source"],
                    lib["license"]]
    detail_outputs = [lib["selected"], lib["preview"], lib["caption"], lib["license_text"],
                      lib["attribution"], lib["notes"], lib["confirm"]]
    hidden = {"api_visibility": "undocumented"}
    lib["refresh"].click(page, filters, page_outputs, api_name="library")
    lib["search"].submit(page, filters, page_outputs, **hidden)
    lib["source"].input(page, filters, page_outputs, **hidden)
    lib["license"].input(page, filters, page_outputs, **hidden)
    lib["page"].submit(page, filters, page_outputs, **hidden)
    lib["tab"].select(page, filters, page_outputs, **hidden)
    lib["tab"].select(caption_hint, None, [lib["caption_hint"], lib["caption_all"],
                                           lib["caption_status"]], **hidden)
    lib["gallery"].select(select, [lib["ids"]], detail_outputs, **hidden)
    lib["save"].click(save, [lib["selected"], lib["caption"], lib["license_text"],
                             lib["attribution"]], detail_outputs, api_name="library_save") \
        .then(page, filters, page_outputs, **hidden)
    lib["delete"].click(delete, [lib["selected"], lib["confirm"]], detail_outputs,
                        api_name="library_delete").then(page, filters, page_outputs, **hidden)
    lib["upload"].click(upload, [lib["files"], lib["upload_caption"],
                                 lib["upload_license"], lib["upload_attribution"], lib["keep"]],
                        [lib["upload_result"], lib["files"]], api_name="library_upload") \
        .then(page, filters, page_outputs, **hidden)
    lib["caption_all"].click(start_captioning, None, [lib["caption_status"], lib["timer"]],
                             api_name="library_caption")
    lib["timer"].tick(poll, None, [lib["caption_status"], lib["timer"]], **hidden)
