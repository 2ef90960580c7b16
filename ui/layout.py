"""The Gradio layout: the page, its three tabs, and the session start.

Per-browser state only: who a request comes from is its signed owner cookie or login
(ui/identity.py, read from the gr.Request of every handler), the open document lives in a
gr.State, and the stop flags of running compositions in a JobFlags object that belongs to
this Blocks (keyed by Gradio's session hash). Model work goes through Gradio's
queue under one concurrency id, so people wait in line instead of crashing each other.
Each tab builds and wires itself: ui/compose_tab.py, ui/documents_tab.py, ui/library_tab.py.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from composer.render import ARTICLE_CSS
from composer.types import ComposerError
from ui import library as lh
from ui.compose_tab import compose_tab, wire_compose
from ui.documents_tab import documents_tab, wire_documents
from ui.i18n import t
from ui.identity import Identities
from ui.jobs import JobFlags
from ui.library_tab import library_tab, wire_library

CSS = ARTICLE_CSS + """
#xc-heading p{font-size:1.6rem;font-weight:700;margin:0}
#xc-article{min-height:12rem;padding:1rem 0}
#xc-status{min-height:1.5rem;color:#555}
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
        gr.Markdown(t("subtitle"))
        if hf_login:
            gr.LoginButton()
        with gr.Tabs() as tabs:
            with gr.Tab(t("compose"), id="compose"):
                c = compose_tab(services.settings)
            with gr.Tab(t("documents"), id="documents") as documents:
                d = documents_tab()
                d["tab"] = documents
            with gr.Tab(t("library"), id="library") as library:
                lib = library_tab()
                lib["tab"] = library

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
        wire_compose(services, flags, c, owner_of, doc_state, model_concurrency)
        wire_documents(services, c, d, owner_of, doc_state, tabs)
        wire_library(services, lib, owner_of)
    demo.css = CSS
    return demo
