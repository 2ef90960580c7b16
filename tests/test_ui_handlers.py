"""The browser UI's handlers called directly (no server)."""

import html
import threading

from pathlib import Path

import pytest

from composer.types import ConflictError, InputError, NotFoundError
from ui import editing as ed
from ui import handlers as h
from tests.support_app import services  # noqa: F401

OWNER = "key:alice-key-0123456789abcdef"
OTHER = "key:bob-key-0123456789abcdef00"


def compose(services, instruction="Harbors", words=400, images="2", owner=OWNER, outline=None):
    request = h.build_request(instruction, "", h.ComposeOptions(words=words, images=images))
    updates = list(h.write_article(services, request, outline, owner, threading.Event(),
                                   interval=0.0))
    return updates


def test_users_win_over_browser_keys():
    key = "verified-browser-id-0123456789ab"  # ui/identity.py verifies it (tests/test_identity.py)
    assert h.owner_id(key, None) == f"key:{key}"
    assert h.owner_id(key, "ann") == "user:ann"
    with pytest.raises(InputError, match="reload the page"):
        h.owner_id(None, None)


def test_form_values_become_a_request_with_clear_errors():
    request = h.build_request("Tea", "notes", h.ComposeOptions(words=600.0, images="3", seed=7))
    assert (request.target_words, request.images, request.seed, request.material) == (600, 3, 7, "notes")
    assert h.build_request("Tea", "", h.ComposeOptions(images="auto")).images is None
    with pytest.raises(InputError, match="seed must be a whole number, got 1.5"):
        h.build_request("Tea", "", h.ComposeOptions(seed=1.5))
    with pytest.raises(InputError, match="target words must be a number"):
        h.build_request("Tea", "", h.ComposeOptions(words="lots"))


def test_outline_round_trip_edit_and_reorder(services):
    title, rows = h.plan_outline(services, "Lighthouses", "", h.ComposeOptions(words=800))
    assert title == "Lighthouses" and len(rows) == 4 and sum(r[2] for r in rows) == 800
    rows = h.move_row(rows, 2, -1)
    rows.append(["My own section", "first; second", 150])
    outline = h.outline_from_rows("Edited", rows)
    assert outline.title == "Edited" and outline.sections[-1].key_points == ["first", "second"]
    assert outline.sections[0].title == "Part River"
    with pytest.raises(InputError, match="row 9 cannot move"):
        h.move_row(rows, 9, -1)
    with pytest.raises(InputError, match="section 1 words must be a number"):
        h.outline_from_rows("x", [["A", "", "many"]])


def test_write_streams_updates_and_saves_for_the_owner(services):
    updates = compose(services)
    assert updates[-1].finished and updates[-1].fraction == 1.0
    assert any('class="streaming"' in u.html for u in updates[:-1])  # text shows as it streams
    final = updates[-1].html
    assert final.count("<figure>") == 2 and "/media/" in final
    doc = h.owned_document(services, updates[-1].document_id, OWNER)
    assert doc.owner == OWNER and doc.status == "done"
    assert [row[4] for row in h.list_documents(services, OWNER)] == [doc.id]
    assert h.list_documents(services, OTHER) == []


def test_the_outline_shows_in_the_article_as_it_is_planned(services):
    request = h.build_request("Harbors", "", h.ComposeOptions(words=400, images="2"))
    updates = list(h.write_article(services, request, None, OWNER, threading.Event(),
                                   interval=0.0))
    planning = [u.html for u in updates if u.stage == "plan" and 'class="planned"' in u.html]
    assert planning, "no update showed the planned sections"
    doc = h.owned_document(services, updates[-1].document_id, OWNER)
    last = planning[-1]
    for section in doc.outline.sections:  # every heading, and its key points, escaped
        assert html.escape(section.title) in last
        assert all(html.escape(point) in last for point in section.key_points)
    grown = [u.html.count('<h2 class="planned">') for u in updates if u.stage == "plan"]
    assert grown == sorted(grown)  # sections appear one by one, none vanishes while planning
    first_text = next(i for i, u in enumerate(updates) if 'class="streaming"' in u.html)
    assert all('class="planned"' not in u.html for u in updates[first_text:])


def test_the_streamed_view_is_the_stored_document_rendered_without_reading_it(services):
    # Each saved paragraph comes in its event and is appended to the view: the document is
    # read while planning, placing images and at the end, not every 0.25 s while text streams.
    import re

    from ui.article_view import render_document

    request = h.build_request("Harbors", "", h.ComposeOptions(words=400, images="2"))
    get, reads, read = services.documents.get, [], []
    services.documents.get = lambda doc_id: reads.append(doc_id) or get(doc_id)
    try:
        for update in h.write_article(services, request, None, OWNER, threading.Event(),
                                      interval=0.0):
            stored = get(update.document_id)
            shown = re.sub(r'(<h2>[^<]*</h2>)?<p class="streaming">.*?▍</p>'
                           r'|<h2 class="planned">[^<]*</h2>(<ul class="planned">.*?</ul>)?',
                           "", update.html, flags=re.S)
            assert shown == render_document(services, stored)
            read.append(update.document is not None)
    finally:
        services.documents.get = get
    assert read[-1] and not all(read) and len(stored.text_blocks) > 3
    assert len(reads) <= sum(read) < len(read) / 10, (len(reads), len(read))


def test_a_view_opened_mid_write_shows_a_paragraph_it_hears_of_again_once(services):
    # a page that opens a document being written reads it, then hears of paragraphs saved
    # since; one saved between the two comes in an event and is already shown
    from ui.article_view import ArticleView, render_document

    doc = h.owned_document(services, compose(services)[-1].document_id, OWNER)
    view = ArticleView(services, doc)
    view.append(doc.text_blocks[-1])
    assert view.html() == render_document(services, doc)
    assert view.words == doc.word_count


def test_the_ui_checks_a_request_once_and_the_composer_takes_it_as_checked(services,
                                                                          monkeypatch):
    import composer.validation as validation

    checks = []
    check = validation.check_generation
    monkeypatch.setattr(validation, "check_generation",
                        lambda config: checks.append(config) or check(config))
    compose(services, images="1")  # build_request, then write_article (compose, plan_stream)
    h.plan_outline(services, "Lighthouses", "", h.ComposeOptions(words=800))
    assert len(checks) == 2


def test_edited_outline_is_used(services):
    outline = h.outline_from_rows("Given title", [["Only section", "x", 120]])
    doc_id = compose(services, outline=outline, images="1")[-1].document_id
    doc = h.owned_document(services, doc_id, OWNER)
    assert doc.title == "Given title" and len(doc.outline.sections) == 1


def test_nobody_opens_or_changes_another_owners_document(services):
    doc_id = compose(services)[-1].document_id
    for action in (lambda: h.owned_document(services, doc_id, OTHER),
                   lambda: h.duplicate_document(services, doc_id, OTHER),
                   lambda: h.delete_document(services, doc_id, OTHER, True),
                   lambda: h.share_link(services, doc_id, OTHER, "http://x"),
                   lambda: h.revoke_link(services, doc_id, OTHER),
                   lambda: ed.choose_candidate(services, doc_id, OTHER, 1, 0, None)):
        with pytest.raises(NotFoundError):
            action()
    assert h.owned_document(services, doc_id, OWNER).status == "done"


def test_duplicate_and_delete_with_confirmation(services):
    doc_id = compose(services)[-1].document_id
    copy = h.duplicate_document(services, doc_id, OWNER)
    assert copy.title.endswith("(copy)") and len(copy.blocks) == len(
        h.owned_document(services, doc_id, OWNER).blocks)
    with pytest.raises(InputError, match="tick 'Yes, delete'"):
        h.delete_document(services, doc_id, OWNER, confirmed=False)
    h.delete_document(services, doc_id, OWNER, confirmed=True)
    assert [row[4] for row in h.list_documents(services, OWNER)] == [copy.id]


def test_candidates_gallery_and_swap_saves_with_version_check(services):
    doc_id = compose(services, images="1")[-1].document_id
    doc = h.owned_document(services, doc_id, OWNER)
    (label, block_id), = h.image_slots(doc)
    gallery = h.candidate_gallery(services, doc, block_id)
    assert len(gallery) == 4 and gallery[0][1].startswith("✓ ")
    assert all(Path(path).suffix == ".jpg" and "thumbs" in path for path, _ in gallery)
    swapped = ed.choose_candidate(services, doc_id, OWNER, block_id, 2, doc.version)
    block = swapped.image_blocks[0]
    assert block.image_id == block.candidates[2].image_id and block.origin == "candidate"
    with pytest.raises(ConflictError, match="changed elsewhere"):  # a stale second tab
        ed.choose_candidate(services, doc_id, OWNER, block_id, 1, doc.version)
    with pytest.raises(InputError, match="candidate 9 does not exist"):
        ed.choose_candidate(services, doc_id, OWNER, block_id, 8, swapped.version)
    assert ed.undo(services, doc_id, OWNER, swapped.version).image_blocks[0].image_id == \
        doc.image_blocks[0].image_id


def test_share_link_and_revoke(services):
    doc_id = compose(services, images="1")[-1].document_id
    link = h.share_link(services, doc_id, OWNER, "http://127.0.0.1:7860/")
    assert link.startswith("http://127.0.0.1:7860/a/") and len(link.rsplit("/", 1)[1]) >= 22
    assert h.share_link(services, doc_id, OWNER, "http://h") .endswith(link.rsplit("/", 1)[1])
    h.revoke_link(services, doc_id, OWNER)
    assert h.owned_document(services, doc_id, OWNER).share_token is None


def test_stop_keeps_text(services):
    flag = threading.Event()
    request = h.build_request("Tea", "", h.ComposeOptions(words=800))
    updates = []
    for update in h.write_article(services, request, None, OWNER, flag):
        updates.append(update)
        if "section 2" in update.status:
            flag.set()
    doc = h.owned_document(services, updates[-1].document_id, OWNER)
    assert doc.status == "interrupted" and doc.text_blocks


def test_login_names_from_auth_or_a_hugging_face_session():
    import time

    assert h.login_name("ann", None) == "ann"
    session = {"oauth_info": {"userinfo": {"preferred_username": "bo"},
                              "expires_at": time.time() + 60}}
    assert h.login_name(None, session) == "bo@huggingface"
    assert h.owner_id("some-browser-key-0123456789abc", h.login_name(None, session)) == (
        "user:bo@huggingface")
    session["oauth_info"]["expires_at"] = time.time() - 1
    assert h.login_name(None, session) is None
    assert h.login_name(None, None) is None


def test_plan_streams_rows_before_their_budgets(services):
    steps = list(h.plan_outline_stream(services, "Lighthouses", "", h.ComposeOptions(words=800)))
    assert len(steps) >= 2
    assert steps[0][1] and all(row[2] == 0 for row in steps[0][1])  # planned, not yet budgeted
    title, rows = steps[-1]
    assert title == "Lighthouses" and sum(row[2] for row in rows) == 800


def test_updates_say_the_stage_the_section_and_the_words_for_the_progress_line(services):  # noqa: F811
    updates = compose(services, words=400)
    writing = [u for u in updates if u.stage in ("write", "draft") and not u.finished]
    assert writing and all(u.sections and 0 <= u.section < u.sections for u in writing)
    words = [u.words for u in updates]  # saved words only: they never go back
    assert words == sorted(words) and any(0 < w < words[-1] for w in words)
    last = updates[-1]
    assert last.finished and last.stage == "done" and last.words == last.document.word_count
    assert any(u.stage == "plan" for u in updates)
    assert any(u.stage in ("slots", "caption", "retrieve", "select") for u in updates)
