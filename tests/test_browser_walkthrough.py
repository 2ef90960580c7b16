"""A first-time user in a real browser, in English and Chinese, on a desktop and a phone.

Each walk: the page opens in the browser's language with only the brief showing; Plan
streams the outline into a table that fits the screen; Write shows the article as it is
written (no overlay on it, one progress line, Stop only while it runs); Stop keeps what was
written; the Edit tab previews and accepts a model edit (Accept only once the preview is
there) and shares the article; Documents opens an article by a click; the Library shows an
upload at once. Screenshots of every step go to artifacts/screenshots/walkthrough/.
"""

from __future__ import annotations

import pytest

from tests.fakes import ArticleWriter
from tests.support_app import LiveServer, make_services
from tests.support_browser import SHOTS, browser, needs_chromium  # noqa: F401

pytestmark = needs_chromium

WALK = SHOTS / "walkthrough"
WORDS = {  # what the person sees, in each language
    "en-US": {"compose": "Compose", "edit": "Edit", "documents": "Documents",
              "library": "Library", "expand": "Expand", "stopped": "Stopped",
              "done": "Done", "accepted": "Accepted", "words_header": "Words",
              "writing": "Writing section", "opened": "Opened", "share": "Share",
              "language": "en"},
    "zh-CN": {"compose": "创作", "edit": "编辑", "documents": "文档", "library": "图库",
              "expand": "扩写", "stopped": "已停止", "done": "完成", "accepted": "已接受",
              "words_header": "字数", "writing": "正在撰写", "opened": "已打开", "share": "分享",
              "language": "zh"},
}


@pytest.fixture(scope="module")
def walk_app(tmp_path_factory):
    """The app on the article writer at 30 ms a word (a Stop lands mid-article); it writes
    Chinese too, so a zh-CN browser's article language follows the browser."""
    services = make_services(tmp_path_factory.mktemp("walk") / "home",
                             lm=ArticleWriter(delay=0.03))
    with LiveServer(services) as server:
        server.services = services
        yield server
    services.db.dispose()


def _text(page, selector: str) -> str:
    return page.locator(selector).inner_text()


def _wait_text(page, selector: str, text: str, timeout: int = 60_000) -> None:
    page.wait_for_function("([s, t]) => document.querySelector(s)?.innerText.includes(t)",
                           arg=[selector, text], timeout=timeout)


def _shown(page, selector: str) -> bool:
    """Whether the element is on the page and laid out (Gradio hides with display:none)."""
    return page.evaluate("s => { const e = document.querySelector(s);"
                         " return !!e && e.offsetParent !== null; }", selector)


def _fits(page, width: int) -> None:
    """Nothing is wider than the screen: no sideways scrolling."""
    assert page.evaluate("document.documentElement.scrollWidth") <= width


def _photo(path, seed: int) -> None:
    """A small noisy PNG unlike any other in the library (no near-duplicate)."""
    import random

    from PIL import Image

    rng = random.Random(seed)
    image = Image.new("RGB", (96, 64))
    image.putdata([tuple(rng.randrange(256) for _ in range(3)) for _ in range(96 * 64)])
    image.save(path, "PNG")


def _tab(page, name: str) -> None:
    page.locator("button[role='tab']", has_text=name).first.click()


@pytest.mark.parametrize("width", [1280, 390])
@pytest.mark.parametrize("locale", ["en-US", "zh-CN"])
def test_a_first_time_user_composes_stops_edits_shares_and_uses_the_library(
        walk_app, browser, tmp_path, locale, width):
    words = WORDS[locale]
    WALK.mkdir(parents=True, exist_ok=True)
    shot = lambda step: page.screenshot(  # noqa: E731
        path=str(WALK / f"{locale}_{width}_{step}.png"), full_page=True)
    page = browser.new_page(viewport={"width": width, "height": 900 if width > 500 else 844},
                            locale=locale)
    page.goto(walk_app.url + "/")
    page.wait_for_selector("#xc-write:not([disabled])", timeout=30_000)

    # 1. the brief only, in the browser's language; nothing that cannot act yet
    for name in ("compose", "edit", "documents", "library"):
        assert page.locator("button[role='tab']", has_text=words[name]).count() == 1
    page.wait_for_function("l => document.querySelector(`#xc-language input[value='${l}']`)"
                           "?.checked", arg=words["language"], timeout=10_000)
    assert not _shown(page, "#xc-stop") and not _shown(page, "#xc-article h1")
    _fits(page, width)
    shot("1_start")

    # 2. plan: the outline streams into a table whose columns all fit the screen
    page.fill("#xc-instruction textarea", "Harbors of the north")
    page.fill("#xc-words input", "600")
    page.click("#xc-plan")
    page.wait_for_function("document.querySelectorAll('#xc-outline .virtual-row').length >= 2",
                           timeout=60_000)
    page.wait_for_function("!document.querySelector('#xc-stop')?.offsetParent",
                           timeout=60_000)
    header = page.locator("#xc-outline th", has_text=words["words_header"]).first
    box = header.bounding_box()
    assert box is not None and box["x"] + box["width"] <= width
    _fits(page, width)
    shot("2_outline")

    # 3. write: the article streams in view, never greyed, with one progress line
    page.click("#xc-write")
    _wait_text(page, "#xc-status", words["writing"])
    page.wait_for_function("document.querySelectorAll('#xc-article p').length >= 1",
                           timeout=60_000)
    assert _shown(page, "#xc-stop")
    assert page.locator("#xc-plan").is_disabled() and page.locator("#xc-write").is_disabled()
    assert page.locator("#xc-article .eta-bar, #xc-article .progress-text").count() == 0
    assert page.locator("#xc-status progress").count() == 1
    assert page.locator("#xc-article p").first.is_visible()
    article_top = page.locator("#xc-article").bounding_box()["y"]
    assert article_top < page.evaluate("window.scrollY + window.innerHeight")  # in view
    assert page.locator("#xc-status .xc-clock").count() == 1
    # between updates the page's clock counts on by itself (a clock rendered at 1:40)
    page.evaluate("document.body.insertAdjacentHTML('beforeend',"
                  " '<span id=\"xc-test-clock\" class=\"xc-clock\">1:40</span>')")
    page.wait_for_function("['1:41', '1:42'].includes("
                           "document.querySelector('#xc-test-clock').textContent)",
                           timeout=5_000)
    shot("3_writing")

    # 4. stop: what was written stays, Stop goes away, Write is back
    page.click("#xc-stop")
    _wait_text(page, "#xc-status", words["stopped"], timeout=30_000)
    page.wait_for_function("!document.querySelector('#xc-stop')?.offsetParent",
                           timeout=10_000)
    kept = page.locator("#xc-article p").count()
    assert kept >= 1 and not page.locator("#xc-write").is_disabled()
    stopped = walk_app.services.documents.list(limit=1)[0]
    assert stopped.status == "interrupted" and stopped.words > 0
    shot("4_stopped")

    # 5. edit: the stopped article is open; Accept only once the preview is there
    _tab(page, words["edit"])
    page.wait_for_selector("#xc-edit-article h1", timeout=10_000)
    assert not _shown(page, "#xc-edit-empty")
    assert page.locator("#xc-accept").is_disabled()
    page.locator("#xc-op label", has_text=words["expand"]).first.click()
    page.click("#xc-preview")
    page.wait_for_function("document.querySelector('#xc-preview-text textarea')?.value"
                           ".length > 20", timeout=60_000)
    page.wait_for_function("!document.querySelector('#xc-accept')?.disabled", timeout=60_000)
    assert not _shown(page, "#xc-edit-stop")
    shot("5_preview")
    page.click("#xc-accept")
    _wait_text(page, "#xc-edit-status", words["accepted"])
    assert not page.locator("#xc-undo").is_disabled()
    _fits(page, width)
    shot("6_accepted")

    # 6. share: a public link that opens the article without the app
    page.locator("#xc-edit-tools button[role='tab']", has_text=words["share"]).click()
    page.click("#xc-share")
    page.wait_for_function("document.querySelector('#xc-link textarea, #xc-link input')"
                           "?.value.includes('/a/')", timeout=20_000)
    link = page.locator("#xc-link textarea, #xc-link input").first.input_value()
    shared = browser.new_page()
    assert shared.goto(link).status == 200
    assert shared.locator("h1").inner_text() == stopped.title
    shared.close()
    shot("7_shared")

    # 7. documents: a click opens an article in the Edit tab
    _tab(page, words["documents"])
    row = page.locator("#xc-documents .virtual-row", has_text=stopped.title).first
    row.wait_for(timeout=20_000)
    _fits(page, width)
    shot("8_documents")
    row.locator("[role='gridcell']").first.click()
    _wait_text(page, "#xc-edit-status", words["opened"], timeout=20_000)
    assert _shown(page, "#xc-edit-article")

    # 8. library: an upload shows at once, and the form is empty for the next one
    _tab(page, words["library"])
    page.wait_for_function("document.querySelectorAll('#xc-lib-gallery img').length >= 1",
                           timeout=20_000)
    before = page.locator("#xc-lib-gallery img").count()
    upload = tmp_path / "boat.png"
    _photo(upload, seed=len(locale) * 10_000 + width)
    page.click("#xc-lib-upload-box .label-wrap")  # "Upload images" opens
    page.locator("#xc-lib-files input[type='file']").set_input_files(str(upload))
    page.fill("#xc-lib-upload-caption textarea, #xc-lib-upload-caption input",
              f"a fishing boat, {locale} {width}")
    page.click("#xc-lib-upload")
    page.wait_for_function("n => document.querySelectorAll('#xc-lib-gallery img').length > n",
                           arg=before, timeout=30_000)
    caption = page.locator("#xc-lib-upload-caption textarea, #xc-lib-upload-caption input")
    assert caption.first.input_value() == ""
    _fits(page, width)
    shot("9_library")
    page.close()
