"""DocumentRepository on SQLite and PostgreSQL: CRUD, positions, revisions, conflicts."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import func, select, update

from composer.types import (
    ConflictError,
    Document,
    ImageBlock,
    ImageCandidate,
    InputError,
    NotFoundError,
    Outline,
    SectionPlan,
    TextBlock,
)
from storage.db import Database
from storage.documents import DocumentRepository
from storage.images import ImageStore
from storage.tables import BlockRow, DocumentRow, RevisionRow
from tests.support_storage import *  # noqa: F403
from tests.support_storage import image_bytes


def _outline() -> Outline:
    return Outline("Tea", [SectionPlan("Origins", ["China"], 120), SectionPlan("Today", [], 80)])


def _doc(repo: DocumentRepository, title: str = "Tea", owner: str | None = None) -> Document:
    return repo.create(title, "Write about tea", "en", {"target_words": 200}, _outline(), owner)


def _texts(document: Document) -> list[str]:
    return [block.text if isinstance(block, TextBlock) else f"[{block.caption}]"
            for block in document.blocks]


def _positions(db: Database, doc_id: str) -> list[int]:
    with db.session() as session:
        return list(session.scalars(select(BlockRow.position)
                                    .where(BlockRow.document_id == doc_id)
                                    .order_by(BlockRow.position)))


def test_create_and_get(repo: DocumentRepository) -> None:
    document = _doc(repo)
    assert len(document.id) == 32 and int(document.id, 16) >= 0
    assert document.status == "composing" and document.version == 1
    assert document.outline == _outline() and document.options == {"target_words": 200}
    loaded = repo.get(document.id)
    assert loaded == document
    assert datetime.fromisoformat(loaded.created_at).utcoffset() == timedelta(0)
    assert repo.get_by_slug(document.slug).id == document.id


def test_slugs_are_unique_and_long(repo: DocumentRepository) -> None:
    slugs = {_doc(repo).slug for _ in range(20)}
    assert len(slugs) == 20
    assert all(len(slug) >= 22 for slug in slugs)  # 16 random bytes, base64url


def test_unknown_ids(repo: DocumentRepository) -> None:
    for call in (lambda: repo.get("0" * 32), lambda: repo.get_by_slug("nope"),
                 lambda: repo.delete("0" * 32), lambda: repo.revisions("0" * 32),
                 lambda: repo.update_block(123456, text="x"), lambda: repo.delete_block(123456),
                 lambda: repo.append_blocks("0" * 32, [TextBlock("x")])):
        with pytest.raises(NotFoundError):
            call()


def test_bad_input(repo: DocumentRepository) -> None:
    with pytest.raises(InputError, match="language 'fr'"):
        repo.create("t", "i", "fr", {})
    document = _doc(repo)
    with pytest.raises(InputError, match="status 'lost'"):
        repo.update_meta(document.id, status="lost")
    with pytest.raises(InputError, match="caption of 2001 characters"):
        repo.append_blocks(document.id, [ImageBlock("x" * 2001)])
    with pytest.raises(InputError, match="not in the library"):
        repo.append_blocks(document.id, [ImageBlock("cat", image_id="f" * 64)])
    with pytest.raises(InputError, match="outside 0..0"):
        repo.insert_block(document.id, 1, TextBlock("x"))
    assert repo.get(document.id).version == 1  # nothing written by the failed calls


def test_append_insert_delete_keep_positions(repo: DocumentRepository, db: Database) -> None:
    document = _doc(repo)
    added = repo.append_blocks(document.id, [TextBlock("a", 0), ImageBlock("cat"),
                                             TextBlock("c", 1)])
    assert all(block.id is not None for block in added)
    assert _texts(repo.get(document.id)) == ["a", "[cat]", "c"]
    inserted = repo.insert_block(document.id, 0, TextBlock("first"))
    repo.insert_block(document.id, 2, TextBlock("middle"))
    repo.insert_block(document.id, 5, TextBlock("last"))
    assert _texts(repo.get(document.id)) == ["first", "a", "middle", "[cat]", "c", "last"]
    assert _positions(db, document.id) == [0, 1, 2, 3, 4, 5]
    repo.delete_block(added[1].id)
    repo.delete_block(inserted.id)
    assert _texts(repo.get(document.id)) == ["a", "middle", "c", "last"]
    assert _positions(db, document.id) == [0, 1, 2, 3]
    more = repo.append_blocks(document.id, [TextBlock("end")])
    assert _texts(repo.get(document.id))[-1] == "end" and more[0].id is not None


def test_move_block(repo: DocumentRepository, db: Database) -> None:
    document = _doc(repo)
    blocks = repo.append_blocks(document.id, [TextBlock(t) for t in "abcd"])
    repo.move_block(blocks[0].id, 3)
    assert _texts(repo.get(document.id)) == ["b", "c", "d", "a"]
    repo.move_block(blocks[3].id, 0)
    assert _texts(repo.get(document.id)) == ["d", "b", "c", "a"]
    assert _positions(db, document.id) == [0, 1, 2, 3]
    with pytest.raises(InputError, match="outside 0..3"):
        repo.move_block(blocks[0].id, 4)
    assert repo.revisions(document.id)[-1].op == "move"


def test_update_blocks(repo: DocumentRepository, store: ImageStore) -> None:
    image, _ = store.add(image_bytes(), caption="a red square")
    document = _doc(repo)
    text_block, image_block = repo.append_blocks(document.id, [TextBlock("old"),
                                                               ImageBlock("red")])
    changed = repo.update_block(text_block.id, text="new text", section=1)
    assert changed == TextBlock("new text", 1, text_block.id)
    candidate = ImageCandidate(image.id, image.caption, 0.9, "CC0", "me")
    changed = repo.update_block(image_block.id, caption="red square", image_id=image.id,
                                candidates=[candidate])
    assert isinstance(changed, ImageBlock) and changed.candidates == [candidate]
    assert repo.get(document.id).blocks[1] == changed
    cleared = repo.update_block(image_block.id, image_id="")
    assert cleared.image_id is None
    with pytest.raises(InputError, match="text block: it has no caption"):
        repo.update_block(text_block.id, caption="x")
    with pytest.raises(InputError, match="image block: it has no text"):
        repo.update_block(image_block.id, text="x")


def test_every_change_bumps_version_and_records_revision(repo: DocumentRepository) -> None:
    document = _doc(repo)
    first, second = repo.append_blocks(document.id, [TextBlock("one"), TextBlock("two")])
    repo.update_block(first.id, text="ONE")
    repo.insert_block(document.id, 1, TextBlock("between"))
    repo.delete_block(second.id)
    repo.update_meta(document.id, title="Green tea", status="done")
    assert repo.get(document.id).version == 6
    history = repo.revisions(document.id)
    assert [(r.op, r.document_version) for r in history] == [
        ("create", 1), ("create", 2), ("create", 2), ("update", 3), ("create", 4),
        ("delete", 5), ("update", 6)]
    assert history[1].old is None and history[1].new["text"] == "one"
    assert history[3].old["text"] == "one" and history[3].new["text"] == "ONE"
    assert history[5].block_id == second.id and history[5].old["text"] == "two"
    assert history[5].new is None
    assert history[6].old == {"title": "Tea", "status": "composing"}
    assert history[6].new == {"title": "Green tea", "status": "done"}


def test_update_meta(repo: DocumentRepository) -> None:
    document = _doc(repo)
    outline = Outline("New", [SectionPlan("Only", ["x"], 50)])
    updated = repo.update_meta(document.id, title="New", outline=outline,
                               options={"seed": 3}, expected_version=1)
    assert (updated.title, updated.outline, updated.options) == ("New", outline, {"seed": 3})
    assert updated.version == 2 and updated.updated_at >= document.updated_at
    assert repo.get(document.id) == updated


def test_version_conflict_between_two_tabs(repo: DocumentRepository) -> None:
    document = _doc(repo)
    (block,) = repo.append_blocks(document.id, [TextBlock("shared")])
    tab_a = repo.get(document.id)
    tab_b = repo.get(document.id)
    repo.update_block(block.id, text="from A", expected_version=tab_a.version)
    message = (f"document {document.id} was changed elsewhere "
               f"\\(version {tab_a.version + 1}, you had {tab_b.version}\\): reload it")
    with pytest.raises(ConflictError, match=message):
        repo.update_block(block.id, text="from B", expected_version=tab_b.version)
    for stale in (lambda: repo.delete_block(block.id, expected_version=tab_b.version),
                  lambda: repo.insert_block(document.id, 0, TextBlock("x"),
                                            expected_version=tab_b.version),
                  lambda: repo.update_meta(document.id, title="B",
                                           expected_version=tab_b.version),
                  lambda: repo.move_block(block.id, 0, expected_version=tab_b.version)):
        with pytest.raises(ConflictError):
            stale()
    after = repo.get(document.id)
    assert _texts(after) == ["from A"] and after.version == tab_a.version + 1
    assert len(repo.revisions(document.id)) == 3
    reloaded = repo.update_block(block.id, text="from B", expected_version=after.version)
    assert reloaded.text == "from B"


def test_delete_cascades(repo: DocumentRepository, db: Database) -> None:
    document = _doc(repo)
    other = _doc(repo, "Other")
    repo.append_blocks(document.id, [TextBlock("a"), ImageBlock("b")])
    repo.append_blocks(other.id, [TextBlock("kept")])
    repo.delete(document.id)
    with pytest.raises(NotFoundError):
        repo.get(document.id)
    with db.session() as session:
        blocks = session.scalar(select(func.count()).select_from(BlockRow))
        revisions = session.scalar(select(func.count()).select_from(RevisionRow)
                                   .where(RevisionRow.document_id == document.id))
    assert blocks == 1 and revisions == 0
    assert _texts(repo.get(other.id)) == ["kept"]


def test_list_newest_first_with_owner_and_words(repo: DocumentRepository,
                                                db: Database) -> None:
    first = _doc(repo, "First", owner="ann")
    second = _doc(repo, "Second", owner="bob")
    third = _doc(repo, "Third", owner="ann")
    start = datetime(2024, 1, 1, tzinfo=timezone.utc)
    with db.session() as session:  # explicit creation times, one minute apart
        for minutes, document in enumerate([first, second, third]):
            session.execute(update(DocumentRow).where(DocumentRow.id == document.id)
                            .values(created_at=start + timedelta(minutes=minutes)))
    repo.append_blocks(first.id, [TextBlock("one two three"), ImageBlock("x"),
                                  TextBlock("四五")])
    assert [s.id for s in repo.list()] == [third.id, second.id, first.id]
    assert [s.id for s in repo.list(owner="ann")] == [third.id, first.id]
    assert [s.id for s in repo.list(limit=1)] == [third.id]
    summary = repo.list(owner="ann")[1]
    assert (summary.title, summary.words, summary.status) == ("First", 5, "composing")
    assert repo.list(owner="nobody") == []
    with pytest.raises(InputError, match="limit 0"):
        repo.list(limit=0)


def test_mark_stale_composing(repo: DocumentRepository, db: Database) -> None:
    stale = _doc(repo, "stale")
    fresh = _doc(repo, "fresh")
    finished = _doc(repo, "finished")
    repo.update_meta(finished.id, status="done")
    an_hour_ago = datetime.now(timezone.utc) - timedelta(hours=1)
    with db.session() as session:
        session.execute(update(DocumentRow).where(DocumentRow.id.in_([stale.id, finished.id]))
                        .values(updated_at=an_hour_ago))
    assert repo.mark_stale_composing(600) == 1
    assert repo.get(stale.id).status == "interrupted"
    assert repo.get(stale.id).version == 2
    assert repo.get(fresh.id).status == "composing"
    assert repo.get(finished.id).status == "done"
    assert repo.revisions(stale.id)[-1].new == {"status": "interrupted"}
    assert repo.mark_stale_composing(600) == 0


def _run_together(calls: list[Callable[[], Any]]) -> list[Any]:
    """Run the calls in threads started together; each result is a value or an exception."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def run(index: int) -> None:
        barrier.wait()
        try:
            results[index] = calls[index]()
        except Exception as error:  # collected for the assertions
            results[index] = error

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


def test_concurrent_saves_one_wins(repo: DocumentRepository) -> None:
    document = _doc(repo)
    (block,) = repo.append_blocks(document.id, [TextBlock("shared")])
    version = repo.get(document.id).version
    results = _run_together([
        lambda i=i: repo.update_block(block.id, text=f"tab {i}", expected_version=version)
        for i in range(4)])
    winners = [r for r in results if isinstance(r, TextBlock)]
    assert len(winners) == 1, results
    assert all(isinstance(r, ConflictError) for r in results if r not in winners), results
    assert _texts(repo.get(document.id)) == [winners[0].text]


def test_concurrent_appends_keep_positions(repo: DocumentRepository, db: Database) -> None:
    document = _doc(repo)
    results = _run_together([
        lambda i=i: repo.append_blocks(document.id, [TextBlock(f"{i}-{j}") for j in range(5)])
        for i in range(4)])
    assert not [r for r in results if isinstance(r, Exception)], results
    assert _positions(db, document.id) == list(range(20))
    assert repo.get(document.id).version == 5
