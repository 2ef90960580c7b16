"""The Compose tab: the form, the outline table, the article, sharing and the image picker.

`compose_tab` builds the components (the editing panel and image tools of ui/edit_panel.py
included) and `wire_compose` connects them to the plain functions of ui/handlers.py. Bad input
is answered by a check event at once; the model work behind it waits in the queue under the
"model" concurrency id, with a Stop button per browser session (ui/jobs.py).
"""

from __future__ import annotations

from typing import Any, Callable

import gradio as gr

from composer.references import reference_note
from composer.types import ComposerError
from ui import handlers as h
from ui.edit_events import wire_editing
from ui.edit_panel import edit_panel, image_tools
from ui import library as lh
from ui.gpu import spaces_gpu
from ui.i18n import t
from ui.jobs import JobFlags, fail, session_of, state_of, stop_flag

OwnerOf = Callable[[Any], str]  # gr.Request -> owner (Identities.owner_of)
IMAGE_CHOICES = ["auto"] + [str(n) for n in range(1, 16)]


def compose_tab(settings: Any) -> dict[str, Any]:
    """The Compose tab's components (inside the caller's gr.Tab), by name."""
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
    c["edit"] = edit_panel(settings)
    with gr.Accordion(t("images_panel"), open=True):
        c["slot"] = gr.Dropdown([], label=t("slot"), elem_id="xc-slot")
        c["gallery"] = gr.Gallery(columns=4, height=220, allow_preview=False,
                                  elem_id="xc-gallery")
        c["image_tools"] = image_tools(settings)
    return c


OPTION_KEYS = ["language", "words", "images", "text_only", "seed", "sample", "temperature",
               "top_p", "repetition_penalty", "beams", "max_tokens", "selection",
               "image_license", "image_source", "candidates", "decoding"]


def _options(values: list[Any]) -> h.ComposeOptions:
    """The option components' values (in OPTION_KEYS order) as ComposeOptions."""
    return h.ComposeOptions(**dict(zip(OPTION_KEYS, values)))


def wire_compose(services: Any, flags: JobFlags, c: dict[str, Any], owner_of: OwnerOf,
                 doc_state: Any, concurrency: int) -> None:
    """Connect the Compose tab: check, plan, write, stop, the outline table, sharing, the
    image picker and the editing panel (ui/edit_panel.py, ui/edit_events.py)."""
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
            raise fail(error)
        flags.arm(session_of(request))
        return h.WAITING

    @spaces_gpu
    def plan(request: gr.Request, instruction: str, material: str, references: Any,
             title: str, outline_rows: Any, *values: Any):
        with stop_flag(flags, request) as flag:
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
                raise fail(error)
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
            raise fail(error)
        with stop_flag(flags, request) as flag:
            if flag.is_set():  # stopped while it waited in the queue
                yield gr.skip(), h.STOPPED_BEFORE_START, gr.skip(), gr.skip()
                return
            try:
                for update in h.write_article(services, compose_request, outline, owner, flag):
                    progress(update.fraction, desc=update.status)
                    doc = update.document
                    if doc is None:  # text streaming in: only the article changed
                        yield update.html, update.status, gr.skip(), gr.skip()
                        continue
                    slots = h.image_slots(doc)
                    first = slots[0][1] if slots and update.finished else None
                    yield (update.html, update.status, state_of(doc),
                           gr.update(choices=slots, value=first))
            except ComposerError as error:
                raise fail(error)

    c["write"].click(check, form, c["status"], **checked).success(
        write, form, [c["article"], c["status"], doc_state, c["slot"]],
        concurrency_id="model", concurrency_limit=concurrency, api_name="write")

    def stop(request: gr.Request):
        flags.stop(session_of(request))

    c["stop"].click(stop, None, None, queue=False, api_name="stop")

    _wire_outline_editing(c)
    _wire_sharing_and_images(services, c, owner_of, doc_state)
    wire_editing(services, flags, owner_of, c, c["edit"], c["image_tools"], doc_state,
                 concurrency)


def _wire_outline_editing(c: dict[str, Any]) -> None:
    def move(rows: Any, number: Any, offset: int):
        try:
            return h.move_row(rows, number, offset)
        except ComposerError as error:
            raise fail(error)

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
            raise fail(error)

    def revoke(state: dict | None, request: gr.Request = None):
        try:
            h.revoke_link(services, (state or {}).get("id"), owner_of(request))
            return ""
        except ComposerError as error:
            raise fail(error)

    def show_candidates(state: dict | None, slot: Any, request: gr.Request = None):
        if not state or slot is None:
            return []
        try:
            doc = h.owned_document(services, state["id"], owner_of(request))
            return h.candidate_gallery(services, doc, slot)
        except ComposerError as error:
            raise fail(error)

    c["share"].click(share, [doc_state], c["link"], api_name="share")
    c["revoke"].click(revoke, [doc_state], c["link"], api_name="revoke")
    c["slot"].change(show_candidates, [doc_state, c["slot"]], c["gallery"],
                     api_name="candidates")


