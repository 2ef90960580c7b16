"""Share pages through FastAPI's TestClient: escaping, CSP, 404s, revocation, Markdown."""

import time

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from composer.types import ImageBlock, ImageCandidate, Outline, SectionPlan, TextBlock
from ui.share import SHARE_CSP, build_share_router
from tests.support_app import services  # noqa: F401

HOSTILE = '<script>alert("pwned")</script>'


@pytest.fixture
def client(services):
    app = FastAPI()
    app.include_router(build_share_router(services))
    return TestClient(app)


def shared_document(services, title="Tides " + HOSTILE):
    image = services.images.list()[0]
    doc = services.documents.create(title, "i", "en", {}, None, owner="key:x")
    services.documents.append_blocks(doc.id, [
        TextBlock("The sea rises. " + HOSTILE),
        ImageBlock(caption="boats " + HOSTILE, image_id=image.id,
                   candidates=[ImageCandidate(image.id, image.caption, 1.0)]),
    ])
    return doc.id, services.shares.share(doc.id), image


def test_share_page_renders_escaped_with_csp_and_open_graph(services, client):
    doc_id, token, image = shared_document(services)
    response = client.get(f"/a/{token}")
    assert response.status_code == 200
    assert response.headers["content-security-policy"] == SHARE_CSP
    assert "script-src" not in SHARE_CSP and "default-src 'none'" in SHARE_CSP
    page = response.text
    assert "<script" not in page
    assert "&lt;script&gt;alert(&quot;pwned&quot;)&lt;/script&gt;" in page
    assert '<meta property="og:title" content="Tides &lt;script&gt;' in page
    assert 'property="og:description" content="The sea rises.' in page
    assert f'/a/{token}/img/{image.id}' in page
    assert "Test Suite, CC0" in page
    image_response = client.get(f"/a/{token}/img/{image.id}")
    assert image_response.status_code == 200
    assert image_response.content == services.images.path(image.id).read_bytes()


def test_markdown_download(services, client):
    doc_id, token, image = shared_document(services)
    response = client.get(f"/a/{token}.md")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/markdown")
    assert "attachment" in response.headers["content-disposition"]
    assert response.text.startswith('# Tides \\<script\\>alert("pwned")\\</script\\>\n')
    assert "&lt;" not in response.text
    assert f"http://testserver/a/{token}/img/{image.id}" in response.text


def test_share_page_and_markdown_have_section_headings_in_document_order(services, client):
    outline = Outline("Tides", [SectionPlan("Why the sea rises", [], 100),
                                SectionPlan("Harbors " + HOSTILE, [], 100)])
    doc = services.documents.create("Tides", "i", "en", {}, outline, owner="key:x")
    services.documents.append_blocks(doc.id, [TextBlock("The moon pulls.", section=1),
                                              TextBlock("Boats wait.", section=1),
                                              TextBlock("Water climbs.", section=0)])
    token = services.shares.share(doc.id)
    page = client.get(f"/a/{token}").text.split("<main>", 1)[1]
    assert page.count("<h2>") == 2 and "<script" not in page
    assert page.index("<h2>Harbors &lt;script&gt;") < page.index("The moon pulls.") < page.index(
        "Boats wait.") < page.index("<h2>Why the sea rises</h2>") < page.index("Water climbs.")
    markdown = client.get(f"/a/{token}.md").text
    assert markdown.index("## Harbors \\<script\\>") < markdown.index("The moon pulls.") < (
        markdown.index("## Why the sea rises")) < markdown.index("Water climbs.")


@pytest.mark.parametrize("path", ["/a/nope", "/a/nope.md", "/a/" + "x" * 300,
                                  "/a/nope/img/" + "0" * 64])
def test_unknown_tokens_get_a_404_page(client, path):
    response = client.get(path)
    assert response.status_code == 404
    assert "not shared" in response.text


def test_revoked_link_is_404_at_once_and_resharing_makes_a_new_link(services, client):
    doc_id, token, image = shared_document(services)
    assert client.get(f"/a/{token}").status_code == 200  # now cached
    services.shares.revoke(doc_id)
    assert client.get(f"/a/{token}").status_code == 404
    assert client.get(f"/a/{token}.md").status_code == 404
    assert client.get(f"/a/{token}/img/{image.id}").status_code == 404
    new_token = services.shares.share(doc_id)
    assert new_token != token and client.get(f"/a/{new_token}").status_code == 200


def test_page_follows_edits_and_images_outside_the_document_are_refused(services, client):
    doc_id, token, image = shared_document(services)
    assert "The sea rises." in client.get(f"/a/{token}").text
    block = services.documents.get(doc_id).text_blocks[0]
    services.documents.update_block(block.id, text="Edited text.")
    assert "Edited text." in client.get(f"/a/{token}").text
    other = services.images.list()[1]
    assert client.get(f"/a/{token}/img/{other.id}").status_code == 404


def test_a_change_from_another_process_shows_once_the_page_is_no_longer_fresh(
        services, monkeypatch):
    from dataclasses import replace
    from types import SimpleNamespace

    import ui.share

    from composer.config import Settings
    from composer.services import Services

    doc_id, token, _ = shared_document(services)
    asked = []
    real_version = services.shares.shared_version
    monkeypatch.setattr(services.shares, "shared_version",
                        lambda t: asked.append(t) or real_version(t))
    monkeypatch.setattr(services, "settings", replace(services.settings,
                                                      share_fresh_seconds=3600.0))
    app = FastAPI()
    app.include_router(build_share_router(services))
    client = TestClient(app)
    assert "The sea rises." in client.get(f"/a/{token}").text
    assert client.get(f"/a/{token}").status_code == 200
    assert asked == [token]  # the second read came from the cache without a query

    # Another process (its own engine and write count) edits the same database.
    other = Services(Settings.from_env({}, home=services.settings.home,
                                       database_url=services.settings.database_url))
    block = other.documents.get(doc_id).text_blocks[0]
    other.documents.update_block(block.id, text="Edited elsewhere.")
    other.db.dispose()
    assert "The sea rises." in client.get(f"/a/{token}").text  # still fresh here
    later = SimpleNamespace(monotonic=lambda: time.monotonic() + 3601.0)
    monkeypatch.setattr(ui.share, "time", later)  # the page's clock only
    assert "Edited elsewhere." in client.get(f"/a/{token}").text
    assert len(asked) == 2


def test_database_counts_only_sessions_that_wrote(services):
    before = services.db.writes
    services.documents.list()
    services.shares.shared_version("nothing")
    assert services.db.writes == before
    services.documents.create("Counted", "i", "en", {}, None, owner="key:x")
    assert services.db.writes > before
