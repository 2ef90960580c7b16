"""The editing panel's handlers (ui/editing.py) on real storage with the scripted model."""

from __future__ import annotations

import threading

import pytest

from composer.types import ConflictError, ImageBlock, InputError, NotFoundError, TextBlock
from tests.support_app import services  # noqa: F401
from tests.support_pipeline import png_bytes
from tests.test_ui_handlers import OTHER, OWNER, compose
from ui import editing as ed
from ui import handlers as h


def _doc(services):
    return h.owned_document(services, compose(services)[-1].document_id, OWNER)


def test_every_action_refuses_another_owner(services):
    doc = _doc(services)
    block = doc.text_blocks[0].id
    image = doc.image_blocks[0].id
    actions = [
        lambda: ed.paragraph_text(services, doc.id, OTHER, block),
        lambda: ed.rate(services, doc.id, OTHER, block, 1),
        lambda: ed.undo(services, doc.id, OTHER, doc.version),
        lambda: ed.redo(services, doc.id, OTHER, doc.version),
        lambda: ed.view_version(services, doc.id, OTHER, 1),
        lambda: ed.restore_version(services, doc.id, OTHER, 1, doc.version),
        lambda: list(ed.preview(services, doc.id, OTHER, "rewrite", block, "",
                                threading.Event())),
        lambda: ed.save_text(services, doc.id, OTHER, block, "x", doc.version),
        lambda: ed.insert_typed(services, doc.id, OTHER, block, "x", "after", doc.version),
        lambda: ed.delete_block(services, doc.id, OTHER, block, doc.version),
        lambda: ed.move_block(services, doc.id, OTHER, block, 1, doc.version),
        lambda: ed.search_again(services, doc.id, OTHER, image, "boats", doc.version),
        lambda: ed.insert_image(services, doc.id, OTHER, block, "boats", doc.version),
        lambda: ed.apply_outline(services, doc.id, OTHER, "t", [["A", "", 100]], doc.version),
    ]
    for action in actions:
        with pytest.raises(NotFoundError):
            action()
    assert h.owned_document(services, doc.id, OWNER) == doc


def test_preview_accept_with_a_tweak_then_undo_and_redo(services):
    doc = _doc(services)
    block = doc.text_blocks[1]
    steps = list(ed.preview(services, doc.id, OWNER, "rewrite", block.id, "shorter",
                            threading.Event()))
    assert len(steps) > 3 and steps[-1][1] is not None
    assert all(proposal is None for _, proposal, _ in steps[:-1])
    text, proposal, fraction = steps[-1]
    assert fraction == 1.0 and text.strip()
    accepted = ed.accept(services, OWNER, proposal, "My own better paragraph about harbors.",
                         doc.version)
    assert accepted.text_blocks[1].text == "My own better paragraph about harbors."
    assert accepted.text_blocks[1].origin == "manual"
    (pair,) = services.pairs.list()
    assert (pair.rejected, pair.chosen) == (block.text, "My own better paragraph about harbors.")
    with pytest.raises(ConflictError):  # the same proposal again, from a stale view
        ed.accept(services, OWNER, proposal, "", doc.version)
    undone = ed.undo(services, doc.id, OWNER, accepted.version)
    assert undone.text_blocks[1].text == block.text
    redone = ed.redo(services, doc.id, OWNER, undone.version)
    assert redone.text_blocks[1].text == "My own better paragraph about harbors."
    with pytest.raises(InputError, match="no preview to accept"):
        ed.accept(services, OWNER, None, "", redone.version)


def test_manual_edits_moves_and_history_views(services):
    doc = _doc(services)
    first, second = doc.text_blocks[0], doc.text_blocks[1]
    assert ed.paragraph_text(services, doc.id, OWNER, first.id) == first.text
    choices = ed.paragraph_choices(doc)
    assert choices[0][1] == first.id and choices[0][0].startswith("¶1 · ")
    edited = ed.save_text(services, doc.id, OWNER, first.id, "Hand <b>written</b>.", doc.version)
    typed = ed.insert_typed(services, doc.id, OWNER, first.id, "Typed after.", "after",
                            edited.version)
    assert [b.text for b in typed.text_blocks[:2]] == ["Hand <b>written</b>.", "Typed after."]
    assert typed.text_blocks[1].origin == "typed"
    moved = ed.move_block(services, doc.id, OWNER, second.id, -1, typed.version)
    index = [b.id for b in moved.blocks].index(second.id)
    assert moved.blocks[index + 1].text == "Typed after."
    with pytest.raises(InputError, match="already first"):
        ed.move_block(services, doc.id, OWNER, moved.blocks[0].id, -1, moved.version)
    deleted = ed.delete_block(services, doc.id, OWNER, second.id, moved.version)
    assert second.id not in {b.id for b in deleted.blocks}
    history, can_undo, can_redo = ed.history_view(services, deleted)
    assert can_undo and not can_redo
    assert len(history) == 5 and history[-1] == (f"v{doc.version} · as written", doc.version)
    assert "Hand &lt;b&gt;written&lt;/b&gt;." not in ed.view_version(services, doc.id, OWNER,
                                                                       doc.version)
    assert "Hand &lt;b&gt;written&lt;/b&gt;." in ed.view_version(services, doc.id, OWNER,
                                                                   edited.version)
    restored = ed.restore_version(services, doc.id, OWNER, doc.version, deleted.version)
    assert restored.blocks == doc.blocks
    with pytest.raises(ConflictError):
        ed.save_text(services, doc.id, OWNER, first.id, "late", deleted.version)


def test_likes_toggle_and_are_kept_with_the_paragraph_kind(services):
    doc = _doc(services)
    block = doc.text_blocks[0]
    assert "liked the paragraph" in ed.rate(services, doc.id, OWNER, block.id, 1)
    assert "paragraph liked" in ed.rating_text(services, doc.id, OWNER, block.id)
    assert ed.rate(services, doc.id, OWNER, block.id, 1) == "Rating cleared"
    ed.rate(services, doc.id, OWNER, block.id, -1)
    ed.rate(services, doc.id, OWNER, None, 1)
    records = services.feedback.all()
    assert [(r.block_id, r.value, r.kind, r.origin) for r in records] == [
        (block.id, -1, "introduction", "compose"), (None, 1, "", "")]
    with pytest.raises(InputError, match="not a paragraph"):
        ed.rate(services, doc.id, OWNER, doc.image_blocks[0].id, 1)


def test_image_tools_search_upload_insert_and_delete(services, tmp_path):
    doc = _doc(services)
    image = doc.image_blocks[0]
    searched = ed.search_again(services, doc.id, OWNER, image.id, "mountain field", doc.version)
    # The caption shown is the found image's own, not the words searched for.
    assert searched.image_blocks[0].caption == "a snowy mountain under a blue sky"
    assert searched.image_blocks[0].origin == "search"
    picture = tmp_path / "mine.png"
    picture.write_bytes(png_bytes((10, 200, 30)))
    uploaded = ed.upload_into_slot(services, doc.id, OWNER, image.id, str(picture),
                                   "my own green picture", searched.version)
    mine = uploaded.image_blocks[0]
    assert mine.origin == "upload" and services.images.get(mine.image_id).owner == OWNER
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    with pytest.raises(InputError, match="broken.png was not added"):
        ed.upload_into_slot(services, doc.id, OWNER, image.id, str(broken), "", uploaded.version)
    with pytest.raises(InputError, match="COMPOSER_IMAGE_GENERATOR"):
        ed.generate_into_slot(services, doc.id, OWNER, image.id, "boats", 0, uploaded.version)
    last = uploaded.text_blocks[-1]
    inserted = ed.insert_image(services, doc.id, OWNER, last.id, "boats at sunrise",
                               uploaded.version)
    index = [b.id for b in inserted.blocks].index(last.id)
    new = inserted.blocks[index + 1]
    assert isinstance(new, ImageBlock)
    assert new.caption == "a quiet harbor at sunrise with fishing boats"  # the image's own
    assert ed.image_after(inserted, last.id) == new.id
    assert ed.image_after(inserted, inserted.blocks[0].id) is None  # a paragraph follows
    with pytest.raises(InputError, match="write a caption"):
        ed.insert_image(services, doc.id, OWNER, last.id, " ", inserted.version)
    gone = ed.delete_block(services, doc.id, OWNER, new.id, inserted.version)
    assert [b.id for b in gone.blocks] == [b.id for b in uploaded.blocks]
    assert isinstance(gone.blocks[index], TextBlock)


def test_outline_after_writing_writes_only_the_new_section(services):
    doc = _doc(services)
    rows = h.outline_rows(doc.outline)
    rows.insert(1, ["Harbor lights at night", "lamps; ships", 100])
    before = {b.id: b for b in doc.text_blocks}
    applied, new = ed.apply_outline(services, doc.id, OWNER, doc.title, rows, doc.version)
    assert new == [1]
    updates = list(ed.write_new_sections(services, applied, OWNER, new, threading.Event()))
    final = updates[-1][3]
    assert updates[-1][2] == 1.0
    written = [b for b in final.text_blocks if b.section == 1]
    assert written and all(b.id not in before for b in written)
    kept = [b for b in final.text_blocks if b.id in before]
    assert [b.text for b in kept] == [b.text for b in doc.text_blocks]
    with pytest.raises(InputError, match="outline is empty"):
        ed.apply_outline(services, doc.id, OWNER, doc.title, [], final.version)


def test_each_edit_reads_the_document_once(services, monkeypatch):
    """The handler loads the document to check its owner; the Editor works on that copy."""
    doc = _doc(services)
    block, image = doc.text_blocks[0].id, doc.image_blocks[0].id
    reads: list[str] = []
    real_get = services.documents.get
    monkeypatch.setattr(services.documents, "get",
                        lambda doc_id: reads.append(doc_id) or real_get(doc_id))

    def reads_of(action):
        reads.clear()
        result = action()
        return len(reads), result

    count, doc = reads_of(lambda: ed.save_text(services, doc.id, OWNER, block,
                                               "A harbor paragraph typed by hand.", doc.version))
    assert count == 1 and doc.text_blocks[0].text == "A harbor paragraph typed by hand."
    count, doc = reads_of(lambda: ed.move_block(services, doc.id, OWNER, block, 1, doc.version))
    assert count == 1 and doc.text_blocks[1].id == block
    count, doc = reads_of(lambda: ed.search_again(services, doc.id, OWNER, image, "boats",
                                                  doc.version))
    assert count == 1
    composed = doc.text_blocks[2].id
    count, steps = reads_of(lambda: list(ed.preview(services, doc.id, OWNER, "rewrite",
                                                    composed, "", threading.Event())))
    assert count == 1
    count, doc = reads_of(lambda: ed.accept(services, OWNER, steps[-1][1], "", doc.version))
    assert count == 1 and doc.text_blocks[2].origin == "rewrite"
