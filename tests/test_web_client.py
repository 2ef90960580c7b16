"""The launched app driven over HTTP: gradio_client composes end to end; share pages serve."""

import urllib.error
import urllib.request

import pytest
from gradio_client import Client

from tests.support_app import live_app  # noqa: F401

NO_OUTLINE = {"headers": ["a", "b", "c"], "data": []}
# The compose form after instruction, material, references, outline title and rows:
# language, words, images, text only, seed, sampling, temperature, top-p, repetition
# penalty, beams, max tokens, image choice, license and source filters.
OPTIONS = ("en", 400, "2", False, 0, False, 0.7, 0.8, 1.1, 1, 1024, "score", "(any)", "(any)",
           3, "default")


def owner_cookie(url: str) -> str:
    """The signed owner cookie the app sets on a browser's first page load."""
    response = urllib.request.urlopen(url + "/")
    cookie = next(value for name, value in response.headers.items()
                  if name.lower() == "set-cookie" and value.startswith("xc_owner="))
    return cookie.split(";")[0]


@pytest.fixture(scope="module")
def client(live_app):
    """An API client that owns what it makes through the signed cookie the app issued it
    (gradio_client would also keep the one set on its first request; forged and missing
    cookies are refused in tests/test_app_security.py)."""
    return Client(live_app.url + "/", verbose=False,
                  headers={"Cookie": owner_cookie(live_app.url)})


def test_compose_through_the_api_saves_for_the_cookie_and_shares(live_app, client):
    # the compose article, the progress line, then what the Edit tab shows (its article,
    # image and paragraph pickers, versions, the editing panel's visibility)
    html, status, edit_html, slots, paragraphs, versions, *_ = client.predict(
        "Harbors of the north", "", None, "", NO_OUTLINE, *OPTIONS, api_name="/write")
    assert status.startswith("✓ Done · ") and " words · " in status
    assert html.count("<figure>") == 2 and "Harbors of the north" in html
    assert edit_html == html and len(slots["choices"]) == 2 and paragraphs["choices"]
    table, *_ = client.predict(api_name="/documents")
    assert table["headers"] == ["Title", "Updated", "Status", "Words"]
    rows = table["data"]
    assert len(rows) == 1 and rows[0][0] == "Harbors of the north" and rows[0][2] == "done"
    doc_id = live_app.services.documents.list(limit=1)[0].id
    stranger = Client(live_app.url + "/", verbose=False,
                      headers={"Cookie": owner_cookie(live_app.url)})
    assert stranger.predict(api_name="/documents")[0]["data"] == []
    link = client.predict({"id": doc_id, "version": 0}, api_name="/share")
    assert link.startswith(live_app.url + "/a/")
    page = urllib.request.urlopen(link).read().decode()
    assert "<h1>Harbors of the north</h1>" in page and page.count("<img") == 2
    client.predict({"id": doc_id, "version": 0}, api_name="/revoke")
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(link)
    assert error.value.code == 404


def test_bad_input_is_an_error_message_not_a_crash(client):
    with pytest.raises(Exception, match="instruction is empty"):
        client.predict("   ", "", None, "", NO_OUTLINE, *OPTIONS, api_name="/write")


def test_plan_returns_an_editable_outline(client):
    title, table, status = client.predict("Lighthouses", "", None, "", NO_OUTLINE,
                                          *OPTIONS[:1], 800, *OPTIONS[2:], api_name="/plan")
    assert title == "Lighthouses"
    assert [row[2] for row in table["data"]] and sum(row[2] for row in table["data"]) == 800


def test_media_serves_library_images_and_rejects_bad_ids(live_app):
    image = live_app.services.images.list()[0]
    data = urllib.request.urlopen(f"{live_app.url}/media/{image.id}").read()
    assert data == live_app.services.images.path(image.id).read_bytes()
    for bad in ("../../etc/passwd", "0" * 64, "xyz"):
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(f"{live_app.url}/media/{bad}")
