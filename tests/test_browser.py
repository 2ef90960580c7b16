"""A real browser (Debian's headless Chromium via Playwright) composes, shares and opens the link.

Screenshots go to artifacts/screenshots/ (kept for people to look at).
"""

from tests.support_app import live_app  # noqa: F401
from tests.support_browser import SHOTS, browser, needs_chromium  # noqa: F401

pytestmark = needs_chromium


def test_compose_share_and_open_the_link(live_app, browser):
    SHOTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.goto(live_app.url + "/")
    _write_article(page, "Harbors <script>window.pwned=1</script> of the north")
    article = page.locator("#xc-article")
    assert article.locator("h1").inner_text() == "Harbors <script>window.pwned=1</script> of the north"
    assert article.locator("figure img").count() >= 1
    assert page.evaluate("window.pwned") is None
    page.screenshot(path=str(SHOTS / "compose_done.png"), full_page=True)

    # the written article is open in the Edit tab, whose Share tools make the public link
    _tab(page, "Edit")
    page.wait_for_function("document.querySelector('#xc-edit-article h1')?.innerText === "
                           "'Harbors <script>window.pwned=1</script> of the north'",
                           timeout=10_000)
    assert page.evaluate("window.pwned") is None
    _edit_tools(page, "Share")
    assert page.locator("#xc-revoke").is_disabled()  # nothing shared yet
    page.click("#xc-share")
    page.wait_for_function("document.querySelector('#xc-link textarea, #xc-link input')?.value"
                           ".includes('/a/')", timeout=20_000)
    link = page.locator("#xc-link textarea, #xc-link input").first.input_value()
    shared = browser.new_page(viewport={"width": 1000, "height": 1200})
    response = shared.goto(link)
    assert response.status == 200
    assert "default-src 'none'" in response.headers["content-security-policy"]
    assert shared.locator("h1").inner_text().startswith("Harbors <script>")
    assert shared.evaluate("window.pwned") is None
    images = shared.locator("figure img")
    assert images.count() >= 1
    for source in shared.evaluate("Array.from(document.images).map(i => i.src)"):
        assert shared.request.get(source).status == 200
    shared.screenshot(path=str(SHOTS / "share_page.png"), full_page=True)

    page.wait_for_function("!document.querySelector('#xc-revoke')?.disabled", timeout=10_000)
    page.click("#xc-revoke")
    page.wait_for_function("document.querySelector('#xc-link textarea, #xc-link input')?.value"
                           " === ''", timeout=20_000)  # answered: the link is gone
    assert page.locator("#xc-revoke").is_disabled()
    assert shared.goto(link).status == 404
    shared.screenshot(path=str(SHOTS / "share_revoked.png"))


def test_documents_view_lists_opens_and_deletes(live_app, browser):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(live_app.url + "/")
    page.click("label:has-text('Text only')")
    _write_article(page, "Mountain bridges")
    _tab(page, "Documents")
    row = page.locator("#xc-documents .virtual-row", has_text="Mountain bridges").first
    row.wait_for(timeout=20_000)
    page.screenshot(path=str(SHOTS / "documents.png"), full_page=True)
    # a click on the row opens it in the Edit tab (and in the Compose tab's article)
    row.locator("[role='gridcell']").first.click()
    _wait_text(page, "#xc-edit-status", "Opened “Mountain bridges”", timeout=20_000)
    page.wait_for_function("document.querySelector('#xc-edit-article h1')?.innerText === "
                           "'Mountain bridges'", timeout=10_000)
    assert page.locator("#xc-edit-article").is_visible()
    assert page.locator("#xc-article h1").inner_text() == "Mountain bridges"

    # deleting the open document, in the Edit tab's Share tools, needs the tick
    _edit_tools(page, "Share")
    page.click("#xc-delete")
    page.wait_for_selector("text=tick 'Yes, delete'", timeout=10_000)  # refused without the tick
    page.screenshot(path=str(SHOTS / "delete_needs_confirmation.png"))
    assert page.locator("#xc-edit-article h1").inner_text() == "Mountain bridges"
    page.click("#xc-confirm label")
    page.click("#xc-delete")
    page.wait_for_selector("text=Deleted “Mountain bridges”", timeout=10_000)
    page.wait_for_selector("#xc-edit-empty", state="visible", timeout=10_000)
    _tab(page, "Documents")  # the listing is read again
    page.locator("#xc-documents .virtual-row", has_text="Mountain bridges").wait_for(
        state="detached", timeout=10_000)


def test_labels_follow_the_browsers_language(live_app, browser):
    context = browser.new_context(locale="zh-CN", viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.goto(live_app.url + "/")
    page.wait_for_selector("#xc-write:has-text('撰写文章')", timeout=20_000)
    assert "生成提纲" in page.locator("#xc-plan").inner_text()
    page.screenshot(path=str(SHOTS / "compose_zh.png"))
    context.close()


def test_library_view_uploads_edits_and_deletes(live_app, browser, tmp_path):
    from tests.support_storage import photo_bytes

    upload = tmp_path / "my-cat.png"
    upload.write_bytes(photo_bytes("chelsea.png", 0.5))
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    page = browser.new_page(viewport={"width": 1280, "height": 1100})
    page.goto(live_app.url + "/")
    page.click("button[role='tab']:has-text('Library')")
    page.wait_for_function("document.querySelector('#xc-lib-summary')?.innerText"
                           ".includes('images')", timeout=20_000)
    assert page.locator("#xc-lib-gallery img").count() >= 4
    page.wait_for_function("document.querySelector('#xc-lib-caption-hint')?.innerText"
                           ".includes('no captioning model is configured')", timeout=20_000)
    page.screenshot(path=str(SHOTS / "library.png"), full_page=True)

    assert not page.locator("#xc-lib-caption").is_visible()  # details once one is picked
    page.click("#xc-lib-upload-box .label-wrap")  # "Upload images" opens
    page.set_input_files("#xc-lib-files input[type=file]", [str(upload), str(broken)])
    page.fill("#xc-lib-upload-caption textarea, #xc-lib-upload-caption input",
              "My cat <img src=x onerror=window.pwned=1>")
    page.click("#xc-lib-upload")
    page.wait_for_function("document.querySelector('#xc-lib-upload-result')?.innerText"
                           ".includes('Added 1')", timeout=60_000)
    result = page.locator("#xc-lib-upload-result").inner_text()
    assert "Not added: broken.png" in result
    assert page.evaluate("window.pwned") is None
    # the form is emptied for the next files
    assert _value(page, "#xc-lib-upload-caption") == ""

    page.fill("#xc-lib-search input, #xc-lib-search textarea", "My cat")
    page.press("#xc-lib-search input, #xc-lib-search textarea", "Enter")
    page.wait_for_function("document.querySelector('#xc-lib-summary')?.innerText"
                           ".startsWith('1 images')", timeout=20_000)
    page.locator("#xc-lib-gallery img").first.click()
    caption = page.locator("#xc-lib-caption textarea")
    page.wait_for_function("document.querySelector('#xc-lib-caption textarea')?.value"
                           ".startsWith('My cat')", timeout=20_000)
    caption.fill("A tabby cat with green eyes, my own photo")
    page.click("#xc-lib-save")
    page.wait_for_function("document.querySelector('#xc-lib-notes')?.innerText"
                           ".includes('Caption by: a person')", timeout=20_000)
    page.screenshot(path=str(SHOTS / "library_edit.png"), full_page=True)
    assert page.evaluate("window.pwned") is None

    page.click("#xc-lib-delete")
    page.wait_for_selector("text=tick 'Yes, delete' to delete this image",
                           timeout=10_000)  # refused without the tick
    assert page.locator("#xc-lib-caption textarea").input_value().startswith("A tabby cat")
    page.click("#xc-lib-confirm label, #xc-lib-confirm input")
    page.click("#xc-lib-delete")
    page.wait_for_function("document.querySelector('#xc-lib-summary')?.innerText"
                           ".includes('No images match')", timeout=20_000)
    page.screenshot(path=str(SHOTS / "library_deleted.png"), full_page=True)


def _write_article(page, instruction: str) -> None:
    """Write an article for `instruction` in the compose view and wait until it is on the
    page."""
    page.fill("#xc-instruction textarea", instruction)
    page.click("#xc-write")
    _wait_written(page)


def _wait_written(page) -> None:
    """Wait for "Done" and then for the article to stop changing for 0.6 s: on a loaded
    machine the last streamed updates may still be reaching the page."""
    page.wait_for_function(
        "document.querySelector('#xc-status')?.innerText.includes('Done')", timeout=60_000)
    page.wait_for_function("""([selector, quiet]) => {
        const element = document.querySelector(selector);
        if (!element) return false;
        const html = element.innerHTML, now = Date.now();
        if (window.__xcHtml !== html) { window.__xcHtml = html; window.__xcSince = now; }
        return now - window.__xcSince >= quiet;
    }""", arg=["#xc-article", 600], timeout=30_000, polling=100)


def _value(page, selector: str) -> str:
    return page.locator(f"{selector} textarea, {selector} input").first.input_value()


def _wait_text(page, selector: str, text: str, timeout: int = 40_000) -> None:
    page.wait_for_function("([s, t]) => document.querySelector(s)?.innerText.includes(t)",
                           arg=[selector, text], timeout=timeout)


def _tab(page, name: str) -> None:
    """Select one of the page's four tabs (Compose, Edit, Documents, Library)."""
    page.locator("button[role='tab']", has_text=name).first.click()


def _edit_tools(page, name: str) -> None:
    """Select a tab of the Edit tab's tools (Paragraphs, Images, History, Share)."""
    page.locator("#xc-edit-tools button[role='tab']", has_text=name).click()


def _pick(page, selector: str, text: str) -> None:
    """Choose the option containing `text` in a Gradio dropdown."""
    page.click(f"{selector} input")
    page.locator("ul[role='listbox'] li", has_text=text).first.click()


def test_edit_preview_accept_undo_like_and_history(live_app, browser):
    page = browser.new_page(viewport={"width": 1280, "height": 1400})
    page.goto(live_app.url + "/")
    _write_article(page, "Lighthouses of the coast")
    first = page.locator("#xc-article p").first.inner_text()
    _tab(page, "Edit")
    page.wait_for_selector("#xc-edit-article h1", timeout=10_000)
    assert page.locator("#xc-edit-article p").first.inner_text() == first
    assert page.locator("#xc-accept").is_disabled()  # nothing to accept yet
    _pick(page, "#xc-paragraph", "¶1")
    page.click("#xc-by-hand .label-wrap")  # "Edit by hand" opens
    page.wait_for_function("document.querySelector('#xc-text textarea')?.value.length > 10",
                           timeout=30_000)
    assert _value(page, "#xc-text") == first

    # ask the model for a rewrite, watch the preview, change it, accept it
    page.fill("#xc-edit-instruction textarea", "simpler <b>words</b>")
    page.click("#xc-preview")
    page.wait_for_function("document.querySelector('#xc-preview-text textarea')?.value"
                           ".length > 20", timeout=30_000)
    # Accept is enabled once the preview is done (and Stop gone)
    page.wait_for_function("!document.querySelector('#xc-accept')?.disabled", timeout=30_000)
    page.wait_for_function("!document.querySelector('#xc-edit-stop')?.offsetParent",
                           timeout=10_000)
    page.fill("#xc-preview-text textarea", "A lighthouse <img src=x onerror=window.pwned=1> "
              "guides ships home at night.")
    page.click("#xc-accept")
    _wait_text(page, "#xc-edit-status", "Accepted")
    assert page.locator("#xc-edit-article p").first.inner_text().startswith(
        "A lighthouse <img src=x")
    assert page.locator("#xc-article p").first.inner_text().startswith(
        "A lighthouse <img src=x")
    assert page.evaluate("window.pwned") is None
    assert page.locator("#xc-accept").is_disabled()  # the preview was used
    page.click("#xc-like")
    page.wait_for_function(
        "document.querySelector('#xc-rating')?.innerText.includes('paragraph liked')",
        timeout=30_000)
    page.screenshot(path=str(SHOTS / "edit_accepted.png"), full_page=True)

    # undo brings the model's paragraph back; redo the edit again
    page.wait_for_function("!document.querySelector('#xc-undo')?.disabled", timeout=10_000)
    page.click("#xc-undo")
    _wait_text(page, "#xc-edit-status", "Undone")
    assert page.locator("#xc-edit-article p").first.inner_text() == first
    page.wait_for_function("!document.querySelector('#xc-redo')?.disabled", timeout=10_000)
    page.click("#xc-redo")
    _wait_text(page, "#xc-edit-status", "Redone")
    assert page.locator("#xc-edit-article p").first.inner_text().startswith("A lighthouse")

    # the history lists the edits and shows the article as first written
    _edit_tools(page, "History")
    _pick(page, "#xc-history", "as written")
    page.click("#xc-view-version")
    page.wait_for_function("document.querySelector('#xc-old-version p')", timeout=30_000)
    assert page.locator("#xc-old-version p").first.inner_text() == first
    page.screenshot(path=str(SHOTS / "edit_history.png"), full_page=True)


def test_image_tools_search_again_upload_and_insert(live_app, browser, tmp_path):
    from PIL import Image

    page = browser.new_page(viewport={"width": 1280, "height": 1400})
    page.goto(live_app.url + "/")
    _write_article(page, "Harbors of the north")
    _tab(page, "Edit")
    _edit_tools(page, "Images")
    figures = page.locator("#xc-edit-article figure")
    page.wait_for_function("document.querySelector('#xc-image-caption textarea')?.value"
                           ".length > 3", timeout=30_000)
    assert figures.count() >= 1
    assert page.locator("#xc-slot input").input_value().startswith("🖼 1: ")

    # a new description, searched again: the first figure shows the image found, captioned
    # with that image's own caption
    page.fill("#xc-image-caption textarea", "a lighthouse on the cliffs")
    page.click("#xc-search-again")
    _wait_text(page, "#xc-edit-status", "Searched again")
    assert figures.first.locator("figcaption").inner_text().startswith(
        "a red lighthouse on a rocky cliff")

    # one's own picture replaces it (once the file is uploaded to the app)
    picture = tmp_path / "own.png"
    Image.new("RGB", (64, 48), (200, 30, 160)).save(picture)
    page.set_input_files("#xc-image-file input[type=file]", str(picture))
    _wait_text(page, "#xc-image-file .file-preview", "own", timeout=20_000)  # uploaded
    page.click("#xc-use-upload")
    _wait_text(page, "#xc-edit-status", "Your picture is in place")
    source = figures.first.locator("img").get_attribute("src")
    assert page.request.get(live_app.url + source).status == 200

    # a new image after the first paragraph (picked in the Paragraphs tools); the article was
    # re-rendered by the upload, so its figures are all on the page now
    count = figures.count()
    _edit_tools(page, "Paragraphs")
    _pick(page, "#xc-paragraph", "¶1")
    _edit_tools(page, "Images")
    page.fill("#xc-image-caption textarea", "boats in a harbor")
    page.click("#xc-insert-image")
    _wait_text(page, "#xc-edit-status", "Image inserted")
    page.wait_for_function(
        f"document.querySelectorAll('#xc-edit-article figure').length === {count + 1}",
        timeout=30_000)
    harbor = "a quiet harbor at sunrise with fishing boats"  # the found image's caption
    page.wait_for_function("document.querySelector('#xc-image-caption textarea')?.value"
                           f" === '{harbor}' && document.querySelector('#xc-slot input')"
                           f"?.value.includes('{harbor}')", timeout=30_000)
    page.locator("#xc-image-caption").scroll_into_view_if_needed()
    page.screenshot(path=str(SHOTS / "edit_images.png"), full_page=True)


def test_each_paragraph_shows_the_checks_it_passed_and_a_preview_says_what_it_kept(
        live_app, browser):
    page = browser.new_page(viewport={"width": 1280, "height": 1200})
    page.goto(live_app.url + "/")
    _write_article(page, "Herons of the city ponds")
    article = page.locator("#xc-article")
    paragraphs, checks = article.locator("p").count(), article.locator(".checks").count()
    assert paragraphs >= 3 and checks == paragraphs
    first = article.locator(".checks").first.inner_text()
    assert first.startswith("✓ clean") and "on topic" in first and "draft" in first
    page.screenshot(path=str(SHOTS / "compose_checks.png"), full_page=True)
    _tab(page, "Edit")
    page.wait_for_selector("#xc-edit-article .checks", timeout=10_000)
    assert page.locator("#xc-edit-article .checks").count() == paragraphs
    _pick(page, "#xc-paragraph", "¶1")
    page.click("#xc-preview")
    _wait_text(page, "#xc-edit-status", "Preview ready", timeout=60_000)
    assert "passed clean" in page.locator("#xc-edit-status").inner_text()
    page.screenshot(path=str(SHOTS / "preview_checks.png"))
