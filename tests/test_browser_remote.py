"""A composition written by a remote OpenAI-compatible server (tests/fake_openai.py, real HTTP
and SSE on loopback) streams into a real browser: the app is configured only by
COMPOSER_WRITER_URL, as a user would run it."""

from __future__ import annotations

from composer.config import Settings
from composer.services import Services
from tests.fakes import WordOverlapRetriever
from tests.support_app import LiveServer
from tests.support_browser import SHOTS, browser, needs_chromium  # noqa: F401
from tests.test_remote_lm import article_server, server  # noqa: F401  (fixture)

pytestmark = needs_chromium


def test_an_article_from_a_model_server_streams_into_the_page(server, browser,  # noqa: F811
                                                              tmp_path):
    sent = article_server(server)
    server.responder_delay = 0.02  # a word every 20 ms: the page shows it growing
    settings = Settings.from_env({"COMPOSER_WRITER_URL": server.url},
                                 home=tmp_path / "home", image_threshold=0.0)
    services = Services(settings)
    services.provide("retriever", WordOverlapRetriever(services.images))
    with LiveServer(services) as app:
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.goto(app.url + "/")
        page.wait_for_selector("#xc-write:not([disabled])", timeout=30_000)
        page.fill("#xc-instruction textarea", "Harbors of the north")
        page.fill("#xc-words input", "300")
        page.click("#xc-write")
        # Part of the article is on the page while the server is still writing (Stop shown).
        page.wait_for_function(
            "document.querySelector('#xc-article')?.innerText.split(/\\s+/).length > 30"
            " && !!document.querySelector('#xc-stop') && "
            "document.querySelector('#xc-stop').offsetParent !== null", timeout=60_000)
        page.wait_for_function("document.querySelector('#xc-status')?.innerText"
                               ".includes('Done')", timeout=90_000)
        page.screenshot(path=str(SHOTS / "remote_writer.png"), full_page=True)
        article = " ".join(page.locator("#xc-article").inner_text().split())
        shown = [" ".join(text.split()) for text in
                 page.locator("#xc-article article > p, #xc-article section > p")
                 .all_inner_texts()]
        page.close()
    # every paragraph on the page is text the server wrote (a draft or its corrective rewrite)
    replies = " ".join(" ".join(reply.split()) for kind, reply in sent
                       if kind not in ("outline_json", "slots"))
    assert len(shown) >= 2 and all(paragraph in replies for paragraph in shown)
    assert "Fishing Towns" in article and "Lighthouses" in article  # the server's outline
    doc = services.documents.list(limit=1)[0]
    assert doc.status == "done" and doc.title == "Harbors of the north"
