"""The Edit tab: the open article beside the tools that change it.

A hint shows until a document is open (written in Compose or opened in Documents); then the
panel: undo/redo and likes on top, and tabs for paragraphs (ask the model with a preview,
or edit by hand), images (candidates, search, upload, generate), the version history, and
sharing. The article sits beside the tools on a wide screen and under them on a phone.
ui/edit_events.py wires it.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from ui.i18n import t

OPERATIONS = [(t("op_rewrite"), "rewrite"), (t("op_expand"), "expand"),
              (t("op_abbreviate"), "abbreviate"), (t("op_insert_before"), "insert_before"),
              (t("op_insert_after"), "insert_after"), (t("op_regenerate"), "regenerate")]


def edit_tab(settings: Any) -> dict[str, Any]:
    """The Edit tab's components (inside the caller's gr.Tab), by name."""
    e: dict[str, Any] = {}
    e["proposal"] = gr.State(None)
    e["empty"] = gr.Markdown(t("no_document"), elem_id="xc-edit-empty")
    with gr.Row(visible=False, elem_id="xc-edit") as e["panel"]:
        with gr.Column(scale=2, min_width=320):
            with gr.Row():
                e["undo"] = gr.Button(t("undo"), size="sm", interactive=False, min_width=80,
                                      elem_id="xc-undo")
                e["redo"] = gr.Button(t("redo"), size="sm", interactive=False, min_width=80,
                                      elem_id="xc-redo")
                e["like_doc"] = gr.Button(t("like_doc"), size="sm", min_width=80,
                                          elem_id="xc-like-doc")
                e["dislike_doc"] = gr.Button(t("dislike_doc"), size="sm", min_width=80,
                                             elem_id="xc-dislike-doc")
            e["status"] = gr.Markdown(elem_id="xc-edit-status")
            with gr.Tabs(elem_id="xc-edit-tools"):
                with gr.Tab(t("paragraph_tools"), id="paragraphs"):
                    _paragraph_tools(e)
                with gr.Tab(t("image_tools"), id="images", elem_id="xc-image-tools"):
                    e["image"] = image_tools(settings)
                with gr.Tab(t("history"), id="history"):
                    e["history"] = gr.Dropdown([], label=t("version"), elem_id="xc-history")
                    with gr.Row():
                        e["view"] = gr.Button(t("view_version"), size="sm",
                                              elem_id="xc-view-version")
                        e["restore"] = gr.Button(t("restore_version"), size="sm",
                                                 elem_id="xc-restore-version")
                    e["old"] = gr.HTML(elem_id="xc-old-version")
                with gr.Tab(t("document_tools"), id="share"):
                    _document_tools(e)
        with gr.Column(scale=3, min_width=320):
            e["article"] = gr.HTML(elem_id="xc-edit-article")
    return e


def _paragraph_tools(e: dict[str, Any]) -> None:
    e["block"] = gr.Dropdown([], label=t("paragraph"), elem_id="xc-paragraph")
    with gr.Row(equal_height=True):
        e["like"] = gr.Button(t("like"), size="sm", scale=0, min_width=90, elem_id="xc-like")
        e["dislike"] = gr.Button(t("dislike"), size="sm", scale=0, min_width=90,
                                 elem_id="xc-dislike")
        e["rating"] = gr.Markdown(elem_id="xc-rating")
    with gr.Accordion(t("ask_model"), open=True):
        e["op"] = gr.Radio(OPERATIONS, value="rewrite", label=t("operation"), elem_id="xc-op")
        e["instruction"] = gr.Textbox(label=t("edit_instruction"), max_length=2000,
                                      placeholder=t("edit_instruction_hint"),
                                      elem_id="xc-edit-instruction")
        with gr.Row():
            e["preview"] = gr.Button(t("preview"), elem_id="xc-preview", min_width=100)
            e["stop"] = gr.Button(t("stop"), variant="stop", visible=False, min_width=100,
                                  elem_id="xc-edit-stop")
        e["preview_text"] = gr.Textbox(label=t("preview_text"), lines=5,
                                       elem_id="xc-preview-text")
        with gr.Row():
            e["accept"] = gr.Button(t("accept"), variant="primary", interactive=False,
                                    min_width=100, elem_id="xc-accept")
            e["cancel"] = gr.Button(t("cancel"), interactive=False, min_width=100,
                                    elem_id="xc-cancel")
    with gr.Accordion(t("by_hand"), open=False, elem_id="xc-by-hand"):
        e["text"] = gr.Textbox(label=t("paragraph_text"), lines=5, elem_id="xc-text")
        with gr.Row():
            e["save_text"] = gr.Button(t("save_text"), variant="primary", size="sm",
                                       elem_id="xc-save-text")
            e["insert_before"] = gr.Button(t("insert_before"), size="sm",
                                           elem_id="xc-insert-before")
            e["insert_after"] = gr.Button(t("insert_after"), size="sm",
                                          elem_id="xc-insert-after")
        _block_moves(e, "block", t("delete_block"))


def _block_moves(parts: dict[str, Any], kind: str, delete_label: Any) -> None:
    """Move up, move down and delete the picked block (#xc-{kind}-up/-down/-delete)."""
    with gr.Row():
        parts["up"] = gr.Button(t("move_up"), size="sm", elem_id=f"xc-{kind}-up")
        parts["down"] = gr.Button(t("move_down"), size="sm", elem_id=f"xc-{kind}-down")
        parts["delete"] = gr.Button(delete_label, size="sm", variant="stop",
                                    elem_id=f"xc-{kind}-delete")


def _document_tools(e: dict[str, Any]) -> None:
    e["shared_id"] = gr.State(None)  # the document whose link is shown
    with gr.Row():
        e["share"] = gr.Button(t("share"), size="sm", variant="primary", elem_id="xc-share")
        e["revoke"] = gr.Button(t("revoke"), size="sm", interactive=False,
                                elem_id="xc-revoke")
    e["link"] = gr.Textbox(label=t("share_link"), interactive=False, elem_id="xc-link",
                           buttons=["copy"])
    with gr.Row():
        e["duplicate"] = gr.Button(t("copy_document"), size="sm", elem_id="xc-duplicate")
        e["confirm"] = gr.Checkbox(False, label=t("confirm_delete"), elem_id="xc-confirm")
        e["delete_doc"] = gr.Button(t("delete_document"), size="sm", variant="stop",
                                    elem_id="xc-delete")


def image_tools(settings: Any) -> dict[str, Any]:
    """The image block tools: the picked image's candidates, and what changes it."""
    i: dict[str, Any] = {}
    i["slot"] = gr.Dropdown([], label=t("slot"), elem_id="xc-slot")
    i["gallery"] = gr.Gallery(label=t("candidates_gallery"), columns=4, height=200,
                              allow_preview=False, elem_id="xc-gallery")
    i["caption"] = gr.Textbox(label=t("image_caption"), elem_id="xc-image-caption")
    with gr.Row():
        i["search"] = gr.Button(t("search_again"), size="sm", elem_id="xc-search-again")
        i["generate"] = gr.Button(t("generate_image"), size="sm", elem_id="xc-generate",
                                  interactive=bool(settings.image_generator))
        i["seed"] = gr.Number(0, precision=0, minimum=0, label=t("image_seed"), scale=0,
                              min_width=90)
        i["stop"] = gr.Button(t("stop"), size="sm", variant="stop", visible=False,
                              elem_id="xc-generate-stop")
    _block_moves(i, "image", t("delete_image"))
    i["file"] = gr.File(label=t("upload_own"), file_types=["image"], elem_id="xc-image-file")
    i["use"] = gr.Button(t("use_upload"), size="sm", elem_id="xc-use-upload")
    i["insert"] = gr.Button(t("insert_image"), size="sm", elem_id="xc-insert-image")
    return i
