"""The running app's protections over real HTTP on loopback: headers, owners, private media.

One live app (tests/support_app.py) serves every test here; the browser check uses Debian's
headless Chromium like tests/test_browser.py.
"""

from __future__ import annotations

import shutil
import urllib.request
from pathlib import Path

import pytest

from tests import support_app
from ui.share import SHARE_CSP
from ui.web_security import app_csp, app_headers

live_app = support_app.live_app  # the fixture, under its name here

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def fetch(url: str, cookie: str | None = None) -> tuple[int, dict[str, str], bytes]:
    """(status, lower-cased headers, body) of a GET, errors included."""
    request = urllib.request.Request(url, headers={"Cookie": cookie} if cookie else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, {k.lower(): v for k, v in response.headers.items()}, \
                response.read()
    except urllib.error.HTTPError as error:
        return error.code, {k.lower(): v for k, v in error.headers.items()}, error.read()


# -- item 7: protective headers ------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/", "/config", "/gradio_api/info", "/healthz"])
def test_app_page_and_gradio_routes_carry_protective_headers(live_app, path):
    status, headers, _ = fetch(live_app.url + path)
    assert status == 200
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "DENY"
    assert headers["referrer-policy"] == "same-origin"
    csp = headers["content-security-policy"]
    assert csp == app_csp() and "frame-ancestors 'none'" in csp
    assert "object-src 'none'" in csp and "base-uri 'self'" in csp


def test_spaces_may_be_framed_by_hugging_face_only():
    headers = app_headers(on_spaces=True)
    assert "frame-ancestors 'self' https://huggingface.co https://*.hf.space" in \
        headers["Content-Security-Policy"]
    assert "X-Frame-Options" not in headers  # it cannot name huggingface.co


def test_share_pages_keep_their_stricter_policy(live_app):
    services = live_app.services
    doc = services.documents.create("Shared", "i", "en", {}, None, owner="key:someone")
    token = services.shares.share(doc.id)
    status, headers, _ = fetch(f"{live_app.url}/a/{token}")
    assert status == 200 and headers["content-security-policy"] == SHARE_CSP
    assert headers["x-content-type-options"] == "nosniff"
    status, headers, _ = fetch(f"{live_app.url}/a/nope")
    assert status == 404 and headers["content-security-policy"] == SHARE_CSP


@pytest.mark.skipif(not Path(CHROMIUM).exists(),
                    reason="Debian's chromium is not installed (apt-get install chromium)")
def test_the_page_works_under_its_policy(live_app):
    """Compose a short text-only article in Chromium: no CSP violation, the article shows."""
    playwright_api = pytest.importorskip("playwright.sync_api")
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            problems: list[str] = []
            page.on("console", lambda message: problems.append(message.text)
                    if "Content Security Policy" in message.text else None)
            page.on("pageerror", lambda error: problems.append(str(error)))
            response = page.goto(live_app.url + "/")
            assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
            page.click("label:has-text('Text only')")
            page.fill("#xc-instruction textarea", "Quiet harbors")
            page.click("#xc-write")
            page.wait_for_function("() => document.querySelector('#xc-status')?.innerText"
                                   ".includes('Done')", timeout=60_000)
            assert page.locator("#xc-article h1").inner_text() == "Quiet harbors"
            page.click("button[role='tab']:has-text('Library')")
            page.wait_for_function("() => document.querySelectorAll('#xc-lib-gallery img')"
                                   ".length >= 4", timeout=20_000)
            assert page.evaluate("() => Array.from(document.querySelectorAll("
                                 "'#xc-lib-gallery img')).every(i => i.naturalWidth > 0)")
            assert problems == []
        finally:
            browser.close()
