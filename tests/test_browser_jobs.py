"""Model jobs in a real browser: Stop stops, bad input is answered while the queue is busy,
and the embedded model composes several times in a row in one tab.

Gradio steps a streaming handler from different worker threads, so these tests also cover
what only shows up in a served app (grad mode is per thread). Screenshots go to
artifacts/screenshots/.
"""

from __future__ import annotations

import pytest

from composer.config import Settings
from composer.services import Services
from tests.fakes import ArticleWriter
from tests.support_app import LiveServer, make_services
from tests.support_browser import SHOTS, browser, needs_chromium  # noqa: F401

pytestmark = needs_chromium

ERROR_TOAST = ".toast-body.error, [data-testid='toast-body'].error"


@pytest.fixture(scope="module")
def slow_app(tmp_path_factory):
    """The app on the article writer, slow enough (50 ms a word) that a composition keeps the
    model queue busy for a while."""
    services = make_services(tmp_path_factory.mktemp("slow") / "home",
                             lm=ArticleWriter(delay=0.05))
    with LiveServer(services) as server:
        server.services = services
        yield server


def _open(browser, url: str):
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.goto(url + "/")
    page.wait_for_selector("#xc-write:not([disabled])", timeout=30_000)
    return page


def _status(page) -> str:
    return page.locator("#xc-status").inner_text()


def _latest(services: Services):
    return services.documents.list(limit=1)[0]


def _wait_status(page, text: str, timeout: int = 60_000, selector: str = "#xc-status") -> None:
    """Wait for `text` in the Compose tab's status line (or the one at `selector`)."""
    page.wait_for_function("([s, text]) => document.querySelector(s)?.innerText"
                           ".includes(text)", arg=[selector, text], timeout=timeout)


def _error_shown(page, text: str, timeout: int = 15_000) -> None:
    """Wait for an error toast containing `text`, then close it."""
    toast = page.locator(ERROR_TOAST, has_text=text).first
    toast.wait_for(timeout=timeout)


def test_bad_input_is_answered_while_another_composition_holds_the_queue(slow_app, browser):
    busy = _open(browser, slow_app.url)
    busy.fill("#xc-instruction textarea", "Harbors of the north")
    busy.fill("#xc-words input", "800")
    busy.click("#xc-write")
    busy.wait_for_function("document.querySelector('#xc-article')?.innerText.length > 40",
                           timeout=60_000)

    other = _open(browser, slow_app.url)
    cases = [("", "800", "instruction is empty"),
             ("\u200b\u202e \u2066\ufeff", "800", "instruction is empty"),
             ("x" * 100_001, "800", "instruction is 100,001 characters"),
             ("Gardens", "5", "target words is 5; it must be between 50 and 10000")]
    for instruction, words, message in cases:
        other.fill("#xc-instruction textarea", instruction)
        other.fill("#xc-words input", words)
        other.click("#xc-write")
        _error_shown(other, message)
        # the composition in the first tab is still running: the answer did not wait for it
        assert _latest(slow_app.services).status == "composing"
        assert "Done" not in _status(busy)
        other.locator(ERROR_TOAST).first.click()  # dismiss
    other.screenshot(path=str(SHOTS / "check_while_busy.png"), full_page=True)

    busy.click("#xc-stop")
    _wait_status(busy, "Stopped", timeout=20_000)
    doc = slow_app.services.documents.get(_latest(slow_app.services).id)
    assert doc.status == "interrupted" and doc.word_count > 0
    busy.screenshot(path=str(SHOTS / "stopped.png"), full_page=True)


def test_stop_while_waiting_in_the_queue_stops_before_it_starts(slow_app, browser):
    busy = _open(browser, slow_app.url)
    busy.fill("#xc-instruction textarea", "Rivers and their bridges")
    busy.click("#xc-write")
    busy.wait_for_function("document.querySelector('#xc-article')?.innerText.length > 40",
                           timeout=60_000)
    before = len(slow_app.services.documents.list(limit=100))

    waiting = _open(browser, slow_app.url)
    waiting.fill("#xc-instruction textarea", "Mountain passes")
    waiting.click("#xc-write")
    _wait_status(waiting, "Waiting for the model")
    waiting.click("#xc-stop")
    busy.click("#xc-stop")
    _wait_status(busy, "Stopped", timeout=20_000)
    _wait_status(waiting, "Stopped before it started", timeout=30_000)
    # the stopped job never created a document
    assert len(slow_app.services.documents.list(limit=100)) == before


def test_stop_ends_an_edit_preview_and_keeps_its_text(slow_app, browser):
    page = _open(browser, slow_app.url)
    page.fill("#xc-instruction textarea", "Lanterns of the harbor")
    page.fill("#xc-words input", "60")
    page.click("label:has-text('Text only')")
    page.click("#xc-write")
    _wait_status(page, "Done")
    page.locator("button[role='tab']", has_text="Edit").first.click()
    page.wait_for_selector("#xc-edit-article h1", timeout=10_000)
    page.click("#xc-paragraph input")
    page.locator("ul[role='listbox'] li", has_text="¶1").first.click()
    page.click("#xc-op label:has-text('Expand')")
    page.click("#xc-preview")
    page.wait_for_function("document.querySelector('#xc-preview-text textarea')?.value"
                           ".length > 20", timeout=30_000)
    assert page.locator("#xc-edit-stop").is_visible()
    page.click("#xc-edit-stop")
    _wait_status(page, "Stopped: the preview keeps what was written", timeout=20_000,
                 selector="#xc-edit-status")
    kept = page.locator("#xc-preview-text textarea").input_value()
    # the preview is over (Stop gone, Accept there): nothing more arrives after the stop
    page.wait_for_function("!document.querySelector('#xc-edit-stop')?.offsetParent && "
                           "!document.querySelector('#xc-accept')?.disabled", timeout=20_000)
    assert page.locator("#xc-preview-text textarea").input_value() == kept and kept
    page.screenshot(path=str(SHOTS / "preview_stopped.png"), full_page=True)


def test_a_second_tab_opens_an_article_being_written_sees_it_live_and_stops_it(slow_app,
                                                                               browser):
    context = browser.new_context(viewport={"width": 1280, "height": 1000})  # one browser
    first = context.new_page()
    first.goto(slow_app.url + "/")
    first.wait_for_selector("#xc-write:not([disabled])", timeout=30_000)
    first.fill("#xc-instruction textarea", "Herons of the city ponds")
    first.fill("#xc-words input", "600")
    first.click("label:has-text('Text only')")
    first.click("#xc-write")
    _wait_status(first, "Writing section")
    doc_id = _latest(slow_app.services).id

    second = context.new_page()
    second.goto(slow_app.url + "/")
    second.wait_for_selector("#xc-write:not([disabled])", timeout=30_000)
    second.locator("button[role='tab']", has_text="Documents").first.click()
    row = second.locator("#xc-documents .virtual-row", has_text="writing").first
    row.wait_for(timeout=20_000)
    row.locator("[role='gridcell']").first.click()
    # it opens in the Compose tab, growing as it is written, with a Stop of its own
    try:
        _wait_status(second, "is being written: you see it live", timeout=20_000)
        _wait_status(second, "Writing section", timeout=30_000)
    finally:
        second.screenshot(path=str(SHOTS / "follow_opened.png"), full_page=True)
    second.wait_for_selector("#xc-stop", state="visible", timeout=10_000)
    # the draft being written streams in, as on the page that started it
    second.wait_for_selector("#xc-article p.streaming", timeout=30_000)
    second.screenshot(path=str(SHOTS / "follow_live.png"), full_page=True)
    second.click("#xc-stop")
    _wait_status(second, "Stopped", timeout=20_000)
    _wait_status(first, "Stopped", timeout=20_000)  # the page that started it hears it too
    doc = slow_app.services.documents.get(doc_id)
    assert doc.status == "interrupted" and doc.word_count > 0
    second.wait_for_selector("#xc-stop", state="hidden", timeout=10_000)
    context.close()


@pytest.fixture(scope="module")
def embedded_app(tmp_path_factory, embedded_lm):
    services = Services(Settings.from_env({}, home=tmp_path_factory.mktemp("embedded") / "home"),
                        lm=embedded_lm)
    with LiveServer(services) as server:
        server.services = services
        yield server
    services.db.dispose()


def _write_new(page, services: Services, ready, timeout: float = 300.0):
    """Press Write, then wait until the new document's summary satisfies `ready`."""
    import time

    before = {row.id for row in services.documents.list(limit=1000)}
    page.click("#xc-write")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        new = [row for row in services.documents.list(limit=1000) if row.id not in before]
        if new and ready(new[0]):
            return new[0]
        page.wait_for_timeout(200)
    raise AssertionError(f"no new document became ready in {timeout} s")


@pytest.mark.slow
def test_three_compositions_in_a_row_with_the_embedded_model_then_a_stop(embedded_app,
                                                                          browser):
    page = _open(browser, embedded_app.url)
    errors: list[str] = []
    page.on("console", lambda message: message.type == "error" and errors.append(message.text))
    briefs = [("Why cities plant trees", "100", True),
              ("How bees make honey", "120", False),
              ("A walk along the old canal", "120", True)]
    for number, (instruction, words, text_only) in enumerate(briefs, start=1):
        page.fill("#xc-instruction textarea", instruction)
        page.fill("#xc-words input", words)
        box = page.locator("#xc-text-only input, label:has-text('Text only') input").first
        if box.is_checked() != text_only:
            page.click("label:has-text('Text only')")
        doc = _write_new(page, embedded_app.services, lambda doc: doc.status != "composing")
        _wait_status(page, "Done", timeout=60_000)
        assert page.locator(ERROR_TOAST).count() == 0, page.locator(ERROR_TOAST).all_inner_texts()
        assert doc.status == "done" and doc.words > 0, (number, doc)
        page.screenshot(path=str(SHOTS / f"embedded_compose_{number}.png"), full_page=True)

    page.fill("#xc-instruction textarea", "The history of lighthouses")
    page.fill("#xc-words input", "600")
    # Stop once the new document has a saved paragraph (the page still shows the last
    # article until the new one streams in, so the page alone cannot tell).
    _write_new(page, embedded_app.services, lambda doc: doc.words > 0)
    page.click("#xc-stop")
    _wait_status(page, "Stopped", timeout=30_000)
    doc = embedded_app.services.documents.get(_latest(embedded_app.services).id)
    assert doc.status == "interrupted" and doc.word_count > 0
    shown = page.locator("#xc-article").inner_text()
    assert doc.text_blocks[0].text[:20] in shown  # what was written stays on the page
    assert page.locator(ERROR_TOAST).count() == 0
    assert not [text for text in errors if "Inference tensors" in text]
    page.screenshot(path=str(SHOTS / "embedded_stopped.png"), full_page=True)
