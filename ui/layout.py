"""The Gradio layout: the page, its four tabs, and the session start.

Compose (the brief, the outline, the article as it is written), Edit (the open article and
the tools that change and share it), Documents (click one to open it) and Library (the
images). Each tab shows only what applies now: Stop only while something runs, the editing
tools only once a document is open, Accept only once there is a preview.

Per-browser state only: who a request comes from is its signed owner cookie or login
(ui/identity.py, read from the gr.Request of every handler), the open document lives in a
gr.State, and the stop flags of running jobs in a JobFlags object that belongs to this
Blocks (keyed by Gradio's session hash). Model work goes through Gradio's queue under one
concurrency id, so people wait in line instead of crashing each other. Labels follow the
browser's language (ui/i18n.py); so does the article language when the writer writes it.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from composer.render import ARTICLE_CSS
from composer.types import ComposerError
from ui import library as lh
from ui.compose_tab import compose_tab, wire_compose
from ui.doc_view import DocView
from ui.documents_tab import documents_tab, wire_documents
from ui.edit_events import wire_editing
from ui.edit_panel import edit_tab
from ui.follow import wire_follow
from ui.i18n import language_of, t
from ui.identity import Identities
from ui.jobs import JobFlags
from ui.library_tab import library_tab, wire_library
from ui.outline_table import outline_value

CSS = ARTICLE_CSS + """
#xc-heading p{font-size:1.5rem;font-weight:700;margin:0}
#xc-article,#xc-edit-article{padding:0.5rem 0}
#xc-status{min-height:1.5rem;color:#555}
#xc-status progress,#xc-edit-status progress{width:8rem;vertical-align:middle;margin-right:.4rem}
#xc-actions button{flex:0 1 auto}
"""


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
        gr.Markdown(t("subtitle"), elem_id="xc-subtitle")
        if hf_login:
            gr.LoginButton()
        with gr.Tabs() as tabs:
            with gr.Tab(t("compose"), id="compose"):
                c = compose_tab(services.settings)
            with gr.Tab(t("edit"), id="edit", elem_id="xc-edit-tab"):
                e = edit_tab(services.settings)
            with gr.Tab(t("documents"), id="documents") as documents:
                d = documents_tab()
                d["tab"] = documents
            with gr.Tab(t("library"), id="library") as library:
                lib = library_tab()
                lib["tab"] = library
        view = DocView(article=e["article"], state=doc_state, slot=e["image"]["slot"],
                       block=e["block"], history=e["history"], undo=e["undo"], redo=e["redo"],
                       panel=e["panel"], empty=e["empty"], apply_outline=c["apply_outline"])

        def start_session(request: gr.Request):
            # The owner (and the login the image routes accept, see Identities.bind) is
            # known from the first call: fill the image filters with what they can see, and
            # start in the browser's language.
            language = language_of(request)
            try:  # the labels follow the browser; the article only if the writer writes it
                services.check_language(language)
                article_language = language
            except ComposerError:
                article_language = "en"
            try:
                sources, licenses = lh.filter_choices(services, owner_of(request))
            except ComposerError as error:
                gr.Warning(str(error))
                sources = licenses = None
            filters = ((gr.skip(), gr.skip()) if sources is None else
                       (gr.update(choices=lh.filter_options(licenses, language)),
                        gr.update(choices=lh.filter_options(sources, language))))
            return (*filters, article_language, outline_value(language, []))

        demo.load(start_session, None, [c["image_license"], c["image_source"], c["language"],
                                        c["outline"]], api_visibility="undocumented")
        wire_compose(services, flags, c, owner_of, view, model_concurrency)
        wire_editing(services, flags, owner_of, c, e, view, model_concurrency)
        opened = wire_documents(services, c, d, e, owner_of, view, tabs)
        wire_follow(services, flags, c, view, owner_of, opened)
        wire_library(services, lib, owner_of)
    demo.css = CSS
    return demo
