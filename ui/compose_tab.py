"""The Compose tab: the brief, plan and write, the outline, and the article as it is written.

`compose_tab` builds the components and `wire_compose` connects them to the plain functions
of ui/handlers.py. Bad input is answered by a check event at once; the model work behind it
waits in the queue under the "model" concurrency id, with a Stop button (shown only while
something runs) per browser session (ui/jobs.py). Gradio's progress overlay is hidden: the
article stays readable while it streams, and one progress line (ui/progress_line.py) says
the stage, the words written and the time.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import gradio as gr

from composer.references import reference_note
from composer.types import ComposerError
from ui import handlers as h
from ui import library as lh
from ui.doc_view import DocView
from ui.gpu import spaces_gpu
from ui.i18n import language_of, say, t
from ui.jobs import JobFlags, fail, session_of, stop_flag
from ui.outline_table import OUTLINE_WIDTHS, outline_value
from ui.progress_line import Progress, progress_line

OwnerOf = Callable[[Any], str]  # gr.Request -> owner (Identities.owner_of)
IMAGE_CHOICES = [(t("auto"), "auto")] + [(str(n), str(n)) for n in range(1, 16)]
QUIET = {"show_progress": "hidden"}  # no overlay: the progress line says what runs


def compose_tab(settings: Any) -> dict[str, Any]:
    """The Compose tab's components (inside the caller's gr.Tab), by name."""
    c: dict[str, Any] = {}
    c["instruction"] = gr.Textbox(label=t("instruction"), placeholder=t("instruction_hint"),
                                  lines=2, elem_id="xc-instruction")
    with gr.Row(equal_height=True):
        c["language"] = gr.Radio([("English", "en"), ("中文", "zh")], value="en",
                                 label=t("language"), min_width=150, elem_id="xc-language")
        # A number field, not a slider: a slider silently moves 5 to its minimum, while
        # this sends what was typed and the check names the limit.
        c["words"] = gr.Number(800, precision=0, step=50, label=t("words"), min_width=150,
                               elem_id="xc-words")
        c["images"] = gr.Dropdown(IMAGE_CHOICES, value="auto", label=t("images"),
                                  min_width=110, elem_id="xc-images")
        c["text_only"] = gr.Checkbox(False, label=t("text_only"), min_width=110,
                                     elem_id="xc-text-only")
    with gr.Accordion(t("more_options"), open=False, elem_id="xc-options"):
        c["material"] = gr.Textbox(label=t("material"), placeholder=t("material_hint"), lines=4)
        c["references"] = gr.File(label=t("reference_images"), file_count="multiple",
                                  file_types=["image"], elem_id="xc-references")
        gr.Markdown(reference_note(settings), elem_id="xc-references-note")
        with gr.Row():
            c["seed"] = gr.Number(0, precision=0, label=t("seed"), minimum=0, min_width=120)
            c["sample"] = gr.Checkbox(False, label=t("sample"), min_width=120)
            c["temperature"] = gr.Slider(0.05, 2.0, value=0.7, step=0.05, label=t("temperature"))
            c["top_p"] = gr.Slider(0.05, 1.0, value=0.8, step=0.05, label=t("top_p"))
        with gr.Row():
            c["repetition_penalty"] = gr.Slider(1.0, 2.0, value=1.1, step=0.05,
                                                label=t("repetition_penalty"))
            c["beams"] = gr.Slider(1, 6, value=1, step=1, label=t("beams"))
            c["candidates"] = gr.Slider(1, 8, value=3, step=1, label=t("candidates"),
                                        info=t("candidates_info"))
            c["max_tokens"] = gr.Slider(64, 4096, value=1024, step=64, label=t("max_tokens"))
        with gr.Row():
            c["decoding"] = gr.Radio([(t("decoding_default"), "default"),
                                      (t("decoding_opera"), "opera")], value="default",
                                     label=t("decoding_method"), info=t("decoding_info"))
            c["selection"] = gr.Radio([(t("selection_score"), "score"),
                                       (t("selection_model"), "model")], value="score",
                                      label=t("selection"))
        with gr.Row():
            any_value = [(t("any"), lh.ANY)]
            c["image_license"] = gr.Dropdown(any_value, value=lh.ANY, label=t("image_license"),
                                             allow_custom_value=True, elem_id="xc-image-license")
            c["image_source"] = gr.Dropdown(any_value, value=lh.ANY, label=t("image_source"),
                                            allow_custom_value=True, elem_id="xc-image-source")
    with gr.Row(elem_id="xc-actions"):
        c["plan"] = gr.Button(t("plan"), elem_id="xc-plan", min_width=120)
        c["write"] = gr.Button(t("write"), variant="primary", elem_id="xc-write", min_width=120)
        c["stop"] = gr.Button(t("stop"), variant="stop", elem_id="xc-stop", visible=False,
                              min_width=100)
    c["status"] = gr.Markdown(elem_id="xc-status")
    with gr.Accordion(t("outline"), open=False, elem_id="xc-outline-box") as c["outline_box"]:
        c["title"] = gr.Textbox(label=t("article_title"), elem_id="xc-title")
        c["outline"] = gr.Dataframe(value=outline_value("en", []),
                                    datatype=["str", "str", "number"],
                                    column_count=(3, "fixed"), row_count=(0, "dynamic"),
                                    interactive=True, wrap=True, column_widths=OUTLINE_WIDTHS,
                                    show_row_numbers=True, elem_id="xc-outline")
        with gr.Row():
            c["row"] = gr.Number(1, precision=0, label=t("row"), minimum=1, min_width=80)
            c["up"] = gr.Button(t("up"), size="sm", min_width=80)
            c["down"] = gr.Button(t("down"), size="sm", min_width=80)
            c["remove"] = gr.Button(t("remove"), size="sm", min_width=80)
            c["add"] = gr.Button(t("add"), size="sm", min_width=80)
        with gr.Row():
            c["clear"] = gr.Button(t("clear_outline"), size="sm")
            c["apply_outline"] = gr.Button(t("apply_outline"), size="sm", visible=False,
                                           elem_id="xc-apply-outline")
    c["article"] = gr.HTML(elem_id="xc-article")
    return c


OPTION_KEYS = ["language", "words", "images", "text_only", "seed", "sample", "temperature",
               "top_p", "repetition_penalty", "beams", "max_tokens", "selection",
               "image_license", "image_source", "candidates", "decoding"]


def _options(values: list[Any]) -> h.ComposeOptions:
    """The option components' values (in OPTION_KEYS order) as ComposeOptions."""
    return h.ComposeOptions(**dict(zip(OPTION_KEYS, values)))


def running(busy: bool) -> tuple[Any, Any, Any]:
    """Plan, Write and Stop while a job runs (busy) or not: Stop only shows while it runs,
    and the buttons that would start another job are disabled meanwhile."""
    return (gr.update(interactive=not busy), gr.update(interactive=not busy),
            gr.update(visible=busy))


def _writing_limit(services: Any, concurrency: int) -> dict[str, Any]:
    """Writing waits in the app's line for the model, unless compositions are queued jobs:
    then workers run them and the page only follows one (it shows its place in their line)."""
    if services.settings.redis_url:
        return {"concurrency_id": "follow", "concurrency_limit": None}
    return {"concurrency_id": "model", "concurrency_limit": concurrency}


def wire_compose(services: Any, flags: JobFlags, c: dict[str, Any], owner_of: OwnerOf,
                 view: DocView, concurrency: int) -> None:
    """Connect the Compose tab: check, plan, write, stop and the outline table; a written
    article is shown in the Edit tab too (`view`, ui/doc_view.py)."""
    options = [c[key] for key in OPTION_KEYS]
    form = [c["instruction"], c["material"], c["references"], c["title"], c["outline"],
            *options]
    buttons = [c["plan"], c["write"], c["stop"]]
    hidden = {"api_visibility": "undocumented"}

    # Handlers take the request first: Gradio injects gr.Request only into positional
    # parameters before a *args. Bad input is answered by `check` at once: it runs in its own
    # unlimited concurrency group (queued, so its error is a toast with the message, which a
    # queue=False event does not show), and only the model work behind it waits in line.
    checked = {"concurrency_id": "check", "concurrency_limit": None, **QUIET, **hidden}

    def check(request: gr.Request, instruction: str, material: str, references: Any,
              title: str, outline_rows: Any, *values: Any):
        try:
            owner_of(request)
            h.check_form(instruction, material, references, title, outline_rows,
                         _options(list(values)), services)
        except ComposerError as error:
            raise fail(error)
        flags.arm(session_of(request))
        return say(language_of(request), "waiting"), *running(True)

    def idle():
        return running(False)

    @spaces_gpu
    def plan(request: gr.Request, instruction: str, material: str, references: Any,
             title: str, outline_rows: Any, *values: Any):
        language, started = language_of(request), time.monotonic()
        with stop_flag(flags, request) as flag:
            if flag.is_set():
                yield gr.skip(), gr.skip(), say(language, "stopped_before_start"), gr.skip()
                return
            yield gr.skip(), gr.skip(), progress_line(language, Progress("plan")), \
                gr.Accordion(open=True)
            try:
                material, images = h.reference_material(services, material, references)
                rows = h.table_rows(outline_rows)
                # the rows appear as the model plans them, then with their word budgets
                for title, rows in h.plan_outline_stream(services, instruction, material,
                                                         _options(list(values)), images,
                                                         cancel=flag):
                    line = progress_line(language, Progress(
                        "plan", sections=len(rows), seconds=time.monotonic() - started,
                        fraction=0.1 + 0.8 * min(1.0, len(rows) / 8)))
                    yield title, outline_value(language, rows), line, gr.Accordion(open=True)
            except ComposerError as error:
                raise fail(error)
        message = "stopped_plan" if flag.is_set() else "planned"
        yield title, outline_value(language, rows), say(language, message), gr.skip()

    c["plan"].click(check, form, [c["status"], *buttons], **checked).success(
        plan, form, [c["title"], c["outline"], c["status"], c["outline_box"]],
        concurrency_id="model", concurrency_limit=concurrency, api_name="plan", **QUIET,
    ).then(idle, None, buttons, queue=False, **hidden)

    @spaces_gpu
    def write(request: gr.Request, instruction: str, material: str, references: Any,
              title: str, outline_rows: Any, *values: Any):
        language, started = language_of(request), time.monotonic()
        nothing = (gr.skip(),) * len(view.outputs)
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
                yield (gr.skip(), say(language, "stopped_before_start"), gr.skip(), *nothing)
                return
            # the outline folds away: the article is what the person watches now
            first = Progress("write" if outline else "plan", sections=len(
                outline.sections) if outline else None)
            yield gr.skip(), progress_line(language, first), gr.Accordion(open=False), *nothing
            try:
                for update in h.write_article(services, compose_request, outline, owner, flag):
                    if update.warning:
                        gr.Warning(update.warning)
                    line = progress_line(language, Progress(
                        update.stage, update.section, update.sections, update.words,
                        time.monotonic() - started, update.fraction, update.position,
                        update.wait_seconds))
                    if not update.finished:
                        yield update.html, line, gr.skip(), *nothing
                        continue
                    # what to do next: the article is open in the Edit tab now
                    yield (update.html, f"{line} · {say(language, 'next_step')}", gr.skip(),
                           *view.show(services, update.document, language))
            except ComposerError as error:
                raise fail(error)

    c["write"].click(check, form, [c["status"], *buttons], **checked).success(
        write, form, [c["article"], c["status"], c["outline_box"], *view.outputs],
        api_name="write", **_writing_limit(services, concurrency), **QUIET,
    ).then(idle, None, buttons, queue=False, **hidden)
    # on a phone the article is below the form: bring the progress line and it into view
    c["write"].click(None, None, None, js="() => document.querySelector('#xc-status')"
                     "?.scrollIntoView({behavior: 'smooth', block: 'start'})", **hidden)

    def stop(request: gr.Request):
        flags.stop(session_of(request))

    c["stop"].click(stop, None, None, queue=False, api_name="stop")
    _wire_outline_editing(c)


def _wire_outline_editing(c: dict[str, Any]) -> None:
    def move(rows: Any, number: Any, offset: int, request: gr.Request):
        try:
            return outline_value(language_of(request), h.move_row(rows, number, offset))
        except ComposerError as error:
            raise fail(error)

    def remove(rows: Any, number: Any, request: gr.Request):
        rows = h.table_rows(rows)
        index = int(number or 0) - 1
        if not 0 <= index < len(rows):
            raise gr.Error(f"row {index + 1} does not exist: rows are 1..{len(rows)}")
        return outline_value(language_of(request), rows[:index] + rows[index + 1:])

    def add(rows: Any, request: gr.Request):
        new = "新的部分" if language_of(request) == "zh" else "New section"
        return outline_value(language_of(request), h.table_rows(rows) + [[new, "", 200]])

    def clear(request: gr.Request):
        return "", outline_value(language_of(request), [])

    def up(rows: Any, number: Any, request: gr.Request):
        return move(rows, number, -1, request)

    def down(rows: Any, number: Any, request: gr.Request):
        return move(rows, number, +1, request)

    def picked_row(event: gr.SelectData):
        return event.index[0] + 1 if event.index else gr.skip()

    hidden = {"api_visibility": "undocumented", "queue": False}
    c["outline"].select(picked_row, None, c["row"], **hidden)  # Move/Remove act on it
    c["up"].click(up, [c["outline"], c["row"]], c["outline"], **hidden)
    c["down"].click(down, [c["outline"], c["row"]], c["outline"], **hidden)
    c["remove"].click(remove, [c["outline"], c["row"]], c["outline"], **hidden)
    c["add"].click(add, c["outline"], c["outline"], **hidden)
    c["clear"].click(clear, None, [c["title"], c["outline"]], **hidden)
