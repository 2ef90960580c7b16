"""The Library tab: browse, search and filter the images, edit or delete one, upload, caption.

The components and their wiring; the actions are the plain functions of ui/library.py.
"""

from __future__ import annotations

from typing import Any, Callable

import gradio as gr

from composer.types import ComposerError
from ui import library as lh
from ui.i18n import language_of, say, t
from ui.jobs import fail

OwnerOf = Callable[[Any], str]  # gr.Request -> owner (Identities.owner_of)


def library_tab() -> dict[str, Any]:
    """The Library tab's components (inside the caller's gr.Tab), by name."""
    lib: dict[str, Any] = {}
    with gr.Row():
        lib["search"] = gr.Textbox(label=t("search_captions"), elem_id="xc-lib-search", scale=3)
        any_value = [(t("any"), lh.ANY)]
        lib["source"] = gr.Dropdown(any_value, value=lh.ANY, label=t("source"), scale=2)
        lib["license"] = gr.Dropdown(any_value, value=lh.ANY, label=t("license"), scale=2)
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
            lib["pick_hint"] = gr.Markdown(t("pick_image"), elem_id="xc-lib-pick")
        with gr.Column(scale=2, visible=False) as lib["details"]:
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
    with gr.Accordion(t("upload"), open=False, elem_id="xc-lib-upload-box"):
        lib["files"] = gr.File(label=t("upload_files"), file_count="multiple",
                               file_types=["image"], elem_id="xc-lib-files")
        with gr.Row():
            lib["upload_caption"] = gr.Textbox(label=t("upload_caption"), scale=3,
                                               elem_id="xc-lib-upload-caption")
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


_EMPTY_DETAILS = (None, None, "", "", "", "", False, gr.update(visible=False),
                  gr.update(visible=True))


def wire_library(services: Any, lib: dict[str, Any], owner_of: OwnerOf) -> None:
    """Connect the Library tab to the handlers of ui/library.py."""
    def page(search: str, source: str, license: str, number: Any, request: gr.Request = None):
        try:
            owner = owner_of(request)
            shown = lh.library_page(services, owner, search, source, license, number)
            sources, licenses = lh.filter_choices(services, owner)
        except ComposerError as error:
            raise fail(error)
        language = language_of(request)
        return (gr.Gallery(value=shown.items, selected_index=None), shown.ids,
                shown.summary(language), shown.page,
                gr.update(choices=lh.filter_options(sources, language)),
                gr.update(choices=lh.filter_options(licenses, language)))

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
            raise fail(error)
        image = shown.image
        return (image.id, str(services.images.thumbnail(image.id, 512)), image.caption,
                image.license, image.attribution, shown.notes, False, gr.update(visible=True),
                gr.update(visible=False))

    def save(image_id: str | None, caption: str, license: str,
             attribution: str, request: gr.Request = None):
        try:
            lh.save_image(services, image_id, owner_of(request), caption, license,
                          attribution)
        except ComposerError as error:
            raise fail(error)
        gr.Info(say(language_of(request), "library_saved"))
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
            result = lh.upload_images(services, owner_of(request), files, caption, license,
                                      attribution, keep,
                                      progress=lambda share, text: progress(share, desc=text))
        except ComposerError as error:
            raise fail(error)
        # the form is emptied for the next files; the details of another image are closed
        return (result, None, "", "", "", False, *_EMPTY_DETAILS)

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
                      lib["attribution"], lib["notes"], lib["confirm"], lib["details"],
                      lib["pick_hint"]]
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
                        [lib["upload_result"], lib["files"], lib["upload_caption"],
                         lib["upload_license"], lib["upload_attribution"], lib["keep"],
                         *detail_outputs], api_name="library_upload") \
        .then(page, filters, page_outputs, **hidden)
    lib["caption_all"].click(start_captioning, None, [lib["caption_status"], lib["timer"]],
                             api_name="library_caption")
    lib["timer"].tick(poll, None, [lib["caption_status"], lib["timer"]], **hidden)
