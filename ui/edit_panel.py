"""The compose view's editing panel and image tools: the components, built in place.

`edit_panel` (under the article) holds undo/redo, likes, model operations with a preview,
edits by hand and the version history; `image_tools` (under the candidate gallery) the image
block operations. ui/edit_events.py wires them.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from ui.i18n import t

OPERATIONS = [("Rewrite", "rewrite"), ("Expand", "expand"), ("Abbreviate", "abbreviate"),
              ("Write a paragraph before", "insert_before"),
              ("Write a paragraph after", "insert_after"),
              ("Regenerate its section", "regenerate")]


def edit_panel(settings: Any) -> dict[str, Any]:
    """The editing components (inside the caller's layout); returns them by name."""
    e: dict[str, Any] = {}
    e["proposal"] = gr.State(None)
    with gr.Accordion(t("edit_panel"), open=True, elem_id="xc-edit"):
        with gr.Row():
            e["undo"] = gr.Button(t("undo"), size="sm", elem_id="xc-undo")
            e["redo"] = gr.Button(t("redo"), size="sm", elem_id="xc-redo")
            e["like_doc"] = gr.Button(t("like_doc"), size="sm", elem_id="xc-like-doc")
            e["dislike_doc"] = gr.Button(t("dislike_doc"), size="sm", elem_id="xc-dislike-doc")
        with gr.Row():
            e["block"] = gr.Dropdown([], label=t("paragraph"), scale=5, elem_id="xc-paragraph")
            e["like"] = gr.Button(t("like"), size="sm", scale=0, min_width=110, elem_id="xc-like")
            e["dislike"] = gr.Button(t("dislike"), size="sm", scale=0, min_width=110,
                                     elem_id="xc-dislike")
        e["rating"] = gr.Markdown(elem_id="xc-rating")
        with gr.Tab(t("ask_model")):
            with gr.Row():
                e["op"] = gr.Radio(OPERATIONS, value="rewrite", label=t("operation"),
                                   elem_id="xc-op")
            e["instruction"] = gr.Textbox(label=t("edit_instruction"), max_length=2000,
                                          placeholder=t("edit_instruction_hint"),
                                          elem_id="xc-edit-instruction")
            with gr.Row():
                e["preview"] = gr.Button(t("preview"), elem_id="xc-preview")
                e["stop"] = gr.Button(t("stop"), variant="stop", elem_id="xc-edit-stop")
            e["preview_text"] = gr.Textbox(label=t("preview_text"), lines=6,
                                           elem_id="xc-preview-text")
            with gr.Row():
                e["accept"] = gr.Button(t("accept"), variant="primary", elem_id="xc-accept")
                e["cancel"] = gr.Button(t("cancel"), elem_id="xc-cancel")
        with gr.Tab(t("by_hand")):
            e["text"] = gr.Textbox(label=t("paragraph_text"), lines=6, elem_id="xc-text")
            with gr.Row():
                e["save_text"] = gr.Button(t("save_text"), variant="primary", size="sm",
                                           elem_id="xc-save-text")
                e["insert_before"] = gr.Button(t("insert_before"), size="sm",
                                               elem_id="xc-insert-before")
                e["insert_after"] = gr.Button(t("insert_after"), size="sm",
                                              elem_id="xc-insert-after")
            with gr.Row():
                e["up"] = gr.Button(t("move_up"), size="sm", elem_id="xc-block-up")
                e["down"] = gr.Button(t("move_down"), size="sm", elem_id="xc-block-down")
                e["delete"] = gr.Button(t("delete_block"), size="sm", variant="stop",
                                        elem_id="xc-block-delete")
        with gr.Tab(t("history")):
            with gr.Row():
                e["history"] = gr.Dropdown([], label=t("version"), scale=4,
                                           elem_id="xc-history")
                e["view"] = gr.Button(t("view_version"), size="sm", scale=1,
                                      elem_id="xc-view-version")
                e["restore"] = gr.Button(t("restore_version"), size="sm", scale=1,
                                         elem_id="xc-restore-version")
            e["old"] = gr.HTML(elem_id="xc-old-version")
    return e


def image_tools(settings: Any) -> dict[str, Any]:
    """The image block tools shown under the candidate gallery."""
    i: dict[str, Any] = {}
    i["caption"] = gr.Textbox(label=t("image_caption"), elem_id="xc-image-caption")
    with gr.Row():
        i["search"] = gr.Button(t("search_again"), size="sm", elem_id="xc-search-again")
        i["generate"] = gr.Button(t("generate_image"), size="sm", elem_id="xc-generate",
                                  interactive=bool(settings.image_generator))
        i["seed"] = gr.Number(0, precision=0, minimum=0, label=t("image_seed"), scale=0,
                              min_width=90)
        i["up"] = gr.Button(t("move_up"), size="sm", elem_id="xc-image-up")
        i["down"] = gr.Button(t("move_down"), size="sm", elem_id="xc-image-down")
        i["delete"] = gr.Button(t("delete_image"), size="sm", variant="stop",
                                elem_id="xc-image-delete")
    with gr.Row():
        i["file"] = gr.File(label=t("upload_own"), file_types=["image"], scale=3,
                            elem_id="xc-image-file")
        i["use"] = gr.Button(t("use_upload"), size="sm", scale=1, elem_id="xc-use-upload")
    i["insert"] = gr.Button(t("insert_image"), size="sm", elem_id="xc-insert-image")
    return i
