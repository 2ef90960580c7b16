"""Edits, undo / redo, the document at any version, feedback and preference pairs, on SQLite
and PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from composer.types import (
    ConflictError,
    Document,
    ImageBlock,
    ImageCandidate,
    InputError,
    NotFoundError,
    Outline,
    PreferencePair,
    SectionPlan,
    TextBlock,
)
from storage.documents import DocumentRepository
from storage.edit_ops import DeleteBlock, InsertBlock, MoveBlock, UpdateBlock, UpdateMeta
from storage.feedback import FeedbackRepository
from storage.images import ImageStore
from storage.pairs import PairRepository
from tests.support_storage import *  # noqa: F403
from tests.support_storage import image_bytes


def _written(repo: DocumentRepository, texts=("one", "two", "three")) -> Document:
    """A document as the composer leaves it: paragraphs appended outside any edit."""
    outline = Outline("Tea", [SectionPlan("Origins", ["China"], 120),
                              SectionPlan("Today", [], 80)])
    doc = repo.create("Tea", "Write about tea", "en", {}, outline, "me")
    repo.append_blocks(doc.id, [TextBlock(text, section=i // 2) for i, text in enumerate(texts)])
    return repo.update_meta(doc.id, status="done")


def _texts(doc: Document) -> list[str]:
    return [b.text if isinstance(b, TextBlock) else f"[{b.caption}]" for b in doc.blocks]


def test_apply_is_one_change_with_one_version(repo: DocumentRepository) -> None:
    doc = _written(repo)
    first, second, third = doc.blocks
    after = repo.apply(doc.id, [UpdateBlock(second.id, text="TWO", origin="manual"),
                                InsertBlock(0, TextBlock("zero", origin="typed")),
                                MoveBlock(third.id, 1), DeleteBlock(first.id)],
                       label="several", expected_version=doc.version)
    assert _texts(after) == ["zero", "three", "TWO"]
    assert after.version == doc.version + 1
    assert [b.origin for b in after.blocks] == ["typed", "compose", "manual"]
    (change,) = repo.history(doc.id)
    assert (change.label, change.kind, change.state) == ("several", "edit", "done")
    assert (change.version_before, change.version_after) == (doc.version, after.version)


def test_undo_redo_walks_back_and_forth(repo: DocumentRepository) -> None:
    doc = _written(repo)
    a = repo.apply(doc.id, [UpdateBlock(doc.blocks[0].id, text="ONE")], label="edit 1",
                   expected_version=doc.version)
    b = repo.apply(a.id, [DeleteBlock(a.blocks[1].id)], label="edit 2",
                   expected_version=a.version)
    c = repo.apply(b.id, [InsertBlock(2, TextBlock("four")), MoveBlock(b.blocks[1].id, 0)],
                   label="edit 3", expected_version=b.version)
    assert _texts(c) == ["three", "ONE", "four"]
    undone = repo.undo(doc.id, expected_version=c.version)
    assert _texts(undone) == _texts(b)
    undone = repo.undo(doc.id, expected_version=undone.version)
    assert _texts(undone) == _texts(a)
    assert [b.id for b in undone.blocks] == [b.id for b in a.blocks]  # the same ids come back
    undone = repo.undo(doc.id, expected_version=undone.version)
    assert _texts(undone) == ["one", "two", "three"] and not repo.can_undo(doc.id)
    with pytest.raises(InputError, match="nothing to undo"):
        repo.undo(doc.id, expected_version=undone.version)
    redone = repo.redo(doc.id, expected_version=undone.version)
    assert _texts(redone) == _texts(a)
    redone = repo.redo(doc.id, expected_version=redone.version)
    assert _texts(redone) == _texts(b)
    # a new edit clears the redo list
    edited = repo.apply(doc.id, [UpdateBlock(redone.blocks[-1].id, text="THREE")],
                        label="edit 4", expected_version=redone.version)
    assert not repo.can_redo(doc.id)
    with pytest.raises(InputError, match="nothing to redo"):
        repo.redo(doc.id, expected_version=edited.version)
    states = [(c.label, c.state) for c in repo.history(doc.id) if c.kind == "edit"]
    assert states == [("edit 1", "done"), ("edit 2", "done"), ("edit 3", "discarded"),
                      ("edit 4", "done")]


def test_undo_reverts_title_and_outline(repo: DocumentRepository) -> None:
    doc = _written(repo)
    outline = Outline("Green tea", [SectionPlan("New", [], 50)])
    after = repo.apply(doc.id, [UpdateMeta(title="Green tea", outline=outline)],
                       label="outline", expected_version=doc.version)
    assert after.title == "Green tea" and after.outline == outline
    back = repo.undo(doc.id, expected_version=after.version)
    assert back.title == "Tea" and back.outline == doc.outline


def test_stale_edits_are_refused_and_write_nothing(repo: DocumentRepository) -> None:
    doc = _written(repo)
    tab_a = repo.get(doc.id)
    tab_b = repo.get(doc.id)
    repo.apply(doc.id, [UpdateBlock(doc.blocks[0].id, text="from A")], label="a",
               expected_version=tab_a.version)
    for stale in (
        lambda: repo.apply(doc.id, [UpdateBlock(doc.blocks[0].id, text="from B")],
                           label="b", expected_version=tab_b.version),
        lambda: repo.undo(doc.id, expected_version=tab_b.version),
    ):
        with pytest.raises(ConflictError, match="changed elsewhere"):
            stale()
    now = repo.get(doc.id)
    assert _texts(now)[0] == "from A" and len(repo.history(doc.id)) == 1


def test_a_failing_op_rolls_the_whole_edit_back(repo: DocumentRepository) -> None:
    doc = _written(repo)
    with pytest.raises(InputError, match="position 9"):
        repo.apply(doc.id, [UpdateBlock(doc.blocks[0].id, text="changed"),
                            MoveBlock(doc.blocks[1].id, 9)], label="bad",
                   expected_version=doc.version)
    with pytest.raises(NotFoundError):
        repo.apply(doc.id, [DeleteBlock(10 ** 9)], label="bad", expected_version=doc.version)
    other = _written(repo)
    with pytest.raises(NotFoundError):  # a block of another document
        repo.apply(doc.id, [DeleteBlock(other.blocks[0].id)], label="bad",
                   expected_version=doc.version)
    assert repo.get(doc.id) == doc and repo.history(doc.id) == []
    with pytest.raises(InputError, match="changes nothing"):
        repo.apply(doc.id, [], label="empty", expected_version=doc.version)


def test_state_at_rebuilds_every_version(repo: DocumentRepository, store: ImageStore) -> None:
    image, _ = store.add(image_bytes(), caption="a teapot")
    doc = _written(repo)
    seen = {doc.version: repo.get(doc.id)}
    candidate = ImageCandidate(image.id, "a teapot", 0.9)
    steps = [
        [InsertBlock(1, ImageBlock("teapot", image.id, [candidate]))],
        [MoveBlock(doc.blocks[2].id, 0), UpdateBlock(doc.blocks[0].id, text="ONE")],
        [DeleteBlock(doc.blocks[1].id), InsertBlock(0, TextBlock("zero"))],
        [UpdateMeta(title="Tea today")],
    ]
    current = doc
    for number, ops in enumerate(steps):
        current = repo.apply(doc.id, ops, label=f"step {number}",
                             expected_version=current.version)
        seen[current.version] = current
    current = repo.undo(doc.id, expected_version=current.version)
    seen[current.version] = current
    for version, expected in seen.items():
        rebuilt = repo.state_at(doc.id, version)
        assert rebuilt.blocks == expected.blocks, version
        assert (rebuilt.title, rebuilt.version) == (expected.title, version)
    with pytest.raises(InputError, match="outside 1.."):
        repo.state_at(doc.id, current.version + 1)


def test_restore_an_old_version_is_one_undoable_edit(repo: DocumentRepository) -> None:
    doc = _written(repo)
    a = repo.apply(doc.id, [DeleteBlock(doc.blocks[0].id), UpdateBlock(doc.blocks[1].id,
                                                                      text="TWO")],
                   label="a", expected_version=doc.version)
    b = repo.apply(doc.id, [InsertBlock(2, TextBlock("four")), MoveBlock(a.blocks[1].id, 0)],
                   label="b", expected_version=a.version)
    restored = repo.restore(doc.id, doc.version, expected_version=b.version)
    assert restored.blocks == doc.blocks
    back = repo.undo(doc.id, expected_version=restored.version)
    assert _texts(back) == _texts(b)


def test_feedback_one_rating_per_person_and_target(db) -> None:
    repo = DocumentRepository(db)
    doc = _written(repo)
    feedback = FeedbackRepository(db)
    block = doc.blocks[0].id
    feedback.rate(doc.id, block, "me", 1, kind="introduction", origin="compose")
    feedback.rate(doc.id, block, "me", -1)  # changes my mind: replaces
    feedback.rate(doc.id, block, "you", 1, kind="introduction", origin="compose")
    feedback.rate(doc.id, None, "me", 1)
    assert feedback.for_document(doc.id, "me") == {block: -1, None: 1}
    records = feedback.all()
    assert [(r.block_id, r.owner, r.value, r.kind) for r in records] == [
        (block, "me", -1, "introduction"), (block, "you", 1, "introduction"),
        (None, "me", 1, "")]
    feedback.rate(doc.id, block, "me", 0)
    assert feedback.for_document(doc.id, "me") == {None: 1}
    with pytest.raises(InputError, match="must be 1"):
        feedback.rate(doc.id, block, "me", 5)
    with pytest.raises(NotFoundError):
        feedback.rate("0" * 32, block, "me", 1)
    repo.delete(doc.id)
    assert feedback.all() == []


def test_pairs_store_and_export(db, tmp_path: Path) -> None:
    pairs = PairRepository(db)
    prompt = [{"role": "user", "content": "Write section 1 <b>x</b>"}]
    first = pairs.add(PreferencePair(prompt, "old model text", "better text", "manual",
                                     kind="introduction", document_id="d" * 32, block_id=3))
    pairs.add(PreferencePair(prompt, "另一个", "更好", "rewrite", language="zh"))
    assert first.id is not None and first.created_at
    assert pairs.count() == 2 and pairs.list(limit=1) == [first]
    with pytest.raises(InputError, match="chosen text is empty"):
        pairs.add(PreferencePair(prompt, "old", "  ", "manual"))
    out = tmp_path / "out" / "pairs.jsonl"
    assert pairs.export_jsonl(out) == 2
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert lines[0]["prompt"] == prompt and lines[0]["kind"] == "introduction"
    assert lines[0]["chosen"] == [{"role": "assistant", "content": "better text"}]
    assert lines[1]["rejected"] == [{"role": "assistant", "content": "另一个"}]
