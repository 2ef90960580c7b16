"""The running app's protections over real HTTP on loopback: headers, owners, private media.

One live app (tests/support_app.py) serves every test here; the browser check uses Debian's
headless Chromium like tests/test_browser.py.
"""

from __future__ import annotations

import json
import urllib.request

import pytest

from composer.types import ImageBlock, ImageCandidate
from tests import support_app, support_browser
from tests.support_pipeline import png_bytes
from ui.identity import COOKIE, NO_OWNER
from ui.share import SHARE_CSP
from ui.web_security import app_csp, app_headers

live_app = support_app.live_app  # the fixtures, under their names here
browser = support_browser.browser


def fetch(url: str, cookie: str | None = None, data: bytes | None = None,
          cookies: str | None = None) -> tuple[int, dict[str, str], bytes]:
    """(status, lower-cased headers, body) of a GET (a POST with `data`), errors included;
    `cookie` is the owner cookie's value, `cookies` a whole Cookie header."""
    headers = {"Content-Type": "application/json"} if data is not None else {}
    if cookie is not None or cookies is not None:
        headers["Cookie"] = cookies or f"{COOKIE}={cookie}"
    request = urllib.request.Request(url, data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, {k.lower(): v for k, v in response.headers.items()}, \
                response.read()
    except urllib.error.HTTPError as error:
        return error.code, {k.lower(): v for k, v in error.headers.items()}, error.read()


def new_browser(url: str) -> tuple[str, str]:
    """(cookie value, owner) of a browser that opened the app page once."""
    status, headers, _ = fetch(url + "/")
    assert status == 200
    value = headers["set-cookie"].split(";")[0].split("=", 1)[1]
    return value, "key:" + value.split(".")[0]


def call(url: str, api_name: str, data: list, cookie: str | None = None,
         cookies: str | None = None) -> tuple[str, object]:
    """Call a named Gradio endpoint over its HTTP API: ("complete", outputs) or
    ("error", message)."""
    status, _, body = fetch(f"{url}/gradio_api/call/{api_name}", cookie,
                            json.dumps({"data": data}).encode(), cookies)
    assert status == 200, body
    event_id = json.loads(body)["event_id"]
    _, _, stream = fetch(f"{url}/gradio_api/call/{api_name}/{event_id}", cookie,
                         cookies=cookies)
    lines = stream.decode().splitlines()
    kind = next(line[7:] for line in lines if line.startswith("event: "))
    payload = json.loads(next(line[6:] for line in lines if line.startswith("data: ")))
    return kind, payload["error"] if kind == "error" else payload


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
    assert "set-cookie" not in headers  # public pages give their visitors no owner cookie
    status, headers, _ = fetch(f"{live_app.url}/a/nope")
    assert status == 404 and headers["content-security-policy"] == SHARE_CSP


@support_browser.needs_chromium
def test_the_page_works_under_its_policy(live_app, browser):
    """Compose a short text-only article in Chromium: no CSP violation, the article shows,
    and the library's thumbnails load."""
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
    page.wait_for_function("() => { const images = Array.from(document."
                           "querySelectorAll('#xc-lib-gallery img'));"
                           "return images.length >= 4 && images.every("
                           "i => i.complete && i.naturalWidth > 0); }", timeout=20_000)
    assert problems == []
    page.close()


def library_gallery(url: str, search: str, cookie: str) -> list[dict]:
    """The Library view's gallery items (with the /gradio_api/file= URLs the UI hands out)."""
    kind, outputs = call(url, "library", [search, "(any)", "(any)", 1], cookie)
    assert kind == "complete", outputs
    gallery = outputs[0]
    return gallery["value"] if isinstance(gallery, dict) else gallery


# -- item 5: owners are server-issued and unforgeable --------------------------------------------

def test_the_page_sets_a_signed_http_only_cookie_and_config_holds_no_secret(live_app):
    status, headers, _ = fetch(live_app.url + "/")
    cookie = headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=") and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    value = cookie.split(";")[0].split("=", 1)[1]
    assert len(value.split(".")[0]) == 32  # 192 random bits
    renewed = fetch(live_app.url + "/", value)[1]["set-cookie"]  # a valid one is kept,
    assert renewed.split(";")[0] == f"{COOKIE}={value}"  # its lifetime renewed
    assert "set-cookie" not in fetch(live_app.url + "/config", value)[1]
    _, _, config = fetch(live_app.url + "/config", value)
    secret = (live_app.services.settings.home / "browser-secret").read_text().strip()
    assert secret not in config.decode() and "BrowserState" not in config.decode()


def test_api_calls_without_a_valid_owner_cookie_are_refused(live_app):
    value, owner = new_browser(live_app.url)
    browser_id, signature = value.split(".")
    def changed(text: str) -> str:  # the last character replaced by a different one
        return text[:-1] + ("x" if text[-1] != "x" else "y")

    forged = ["a", "", '{"key": "a"}', browser_id, f"{changed(browser_id)}.{signature}",
              f"{browser_id}.{changed(signature)}", "key:" + browser_id]
    for cookie in [None, *forged]:
        assert call(live_app.url, "documents", [], cookie) == ("error", NO_OWNER), cookie
    assert call(live_app.url, "documents", ["a"])[0] == "error"  # a key as an input: no
    outline = {"headers": ["Section title", "Key points (separated by ;)", "Words"],
               "data": [], "metadata": None}
    form = ["Tides", "", None, "", outline, "en", 400, "auto", True, 0, False, 0.7, 0.8, 1.1,
            1, 256, "score", "(any)", "(any)", 3, "default"]
    assert call(live_app.url, "write", form, "a") == ("error", NO_OWNER)
    kind, outputs = call(live_app.url, "documents", [], value)
    assert kind == "complete" and outputs[0]["data"] == []
    live_app.services.documents.create("Mine", "i", "en", {}, None, owner=owner)
    kind, outputs = call(live_app.url, "documents", [], value)
    assert [row[0] for row in outputs[0]["data"]] == ["Mine"]
    other, _ = new_browser(live_app.url)
    assert call(live_app.url, "documents", [], other)[1][0]["data"] == []


# -- item 6: private images go to their owner only -------------------------------------------------

def test_private_images_are_served_to_their_owner_only(live_app):
    services = live_app.services
    ann, ann_owner = new_browser(live_app.url)
    bo, _ = new_browser(live_app.url)
    image, _ = services.images.add(png_bytes((10, 200, 90), mark="ann"), caption="ann's secret",
                                   owner=ann_owner)
    shared = services.images.list(owner=None)[0]
    assert fetch(f"{live_app.url}/media/{image.id}", ann)[0] == 200
    for cookie in (bo, None, "forged"):
        status, _, body = fetch(f"{live_app.url}/media/{image.id}", cookie)
        assert status == 404 and body == fetch(f"{live_app.url}/media/{'0' * 64}", cookie)[2]
        assert fetch(f"{live_app.url}/media/{shared.id}", cookie)[0] == 200

    urls = [item["image"]["url"] for item in library_gallery(live_app.url, "ann's secret", ann)]
    direct = [f"/gradio_api/file={services.images.path(image.id)}",
              f"/gradio_api/file={services.images.thumbnail(image.id, 256)}",
              f"/gradio_api/file={services.images.thumbnail(image.id, 512)}"]
    assert len(urls) == 1 and image.id in urls[0]
    for url in urls + direct:
        path = url if url.startswith("/") else "/" + url.split("/", 3)[3]
        assert fetch(live_app.url + path, ann)[0] == 200, url
        for cookie in (bo, None, "forged"):
            assert fetch(live_app.url + path, cookie)[0] == 404, (url, cookie)
    assert library_gallery(live_app.url, "ann's secret", bo) == []


def test_a_shared_document_shows_its_private_images_through_its_link_only(live_app):
    services = live_app.services
    ann, ann_owner = new_browser(live_app.url)
    image, _ = services.images.add(png_bytes((90, 20, 200), mark="doc"), caption="a boat",
                                   owner=ann_owner)
    doc = services.documents.create("Boats", "i", "en", {}, None, owner=ann_owner)
    services.documents.append_blocks(doc.id, [ImageBlock(
        caption="a boat", image_id=image.id, candidates=[ImageCandidate(image.id, "a boat", 1)])])
    token = services.shares.share(doc.id)
    assert fetch(f"{live_app.url}/a/{token}/img/{image.id}")[0] == 200
    assert fetch(f"{live_app.url}/media/{image.id}")[0] == 404
    services.shares.revoke(doc.id)
    assert fetch(f"{live_app.url}/a/{token}/img/{image.id}")[0] == 404


@pytest.fixture(scope="module")
def auth_app(tmp_path_factory):
    """The app with --auth ann:secret."""
    import dataclasses

    services = support_app.make_services(tmp_path_factory.mktemp("auth") / "home")
    services.settings = dataclasses.replace(services.settings, auth="ann:secret")
    with support_app.LiveServer(services) as server:
        server.services = services
        yield server
    services.db.dispose()


def test_with_auth_the_account_owns_and_sees_its_private_images(auth_app):
    import urllib.parse

    value, _ = new_browser(auth_app.url)
    login = urllib.request.Request(
        f"{auth_app.url}/login", urllib.parse.urlencode(
            {"username": "ann", "password": "secret"}).encode(),
        {"Content-Type": "application/x-www-form-urlencoded", "Cookie": f"{COOKIE}={value}"})
    with urllib.request.urlopen(login, timeout=30) as response:
        tokens = [c.split(";")[0] for c in response.headers.get_all("set-cookie")]
    cookies = "; ".join([f"{COOKIE}={value}", *tokens])
    services = auth_app.services
    image, _ = services.images.add(png_bytes((5, 5, 250), mark="acct"), owner="user:ann")
    services.documents.create("Ann's", "i", "en", {}, None, owner="user:ann")

    def media(**cookie: str) -> int:
        return fetch(f"{auth_app.url}/media/{image.id}", **cookie)[0]

    assert media(cookies=cookies) == 404  # before any handler knew the login
    _, outputs = call(auth_app.url, "documents", [], cookies=cookies)
    assert [row[0] for row in outputs[0]["data"]] == ["Ann's"]  # the account owns it
    assert media(cookies=cookies) == 200
    assert media(cookie=value) == 200  # this browser, signed in
    assert media() == 404
    other, _ = new_browser(auth_app.url)
    assert media(cookie=other) == 404

