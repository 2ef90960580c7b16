"""People's edits of a document as undoable changes: apply, undo, redo, history, any version.

An edit (`apply`) is a list of operations (storage/edit_ops.py) run in one transaction with one
version bump and recorded as one `changes` row, the unit of undo / redo. Undo applies the
inverse of a change's revisions, redo applies them again; both are recorded as changes of their
own, so the revisions always replay: `state_at(version)` rebuilds the document as it was at any
version. DocumentRepository (storage/documents.py) offers these methods to its callers.
"""

from __future__ import annotations

import builtins
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from composer.types import Change, Document, InputError, Outline
from storage import row_changes
from storage.db import Database
from storage.edit_ops import (
    MAX_OPS_PER_CHANGE,
    DeleteBlock,
    EditOp,
    InsertBlock,
    MoveBlock,
    UpdateBlock,
    UpdateMeta,
    block_from_content,
    update_to,
)
from storage.rows import block_content, to_document
from storage.tables import BlockRow, ChangeRow, RevisionRow, utcnow


class DocumentHistory:
    """Edits, undo / redo and past versions of documents; each method is one transaction."""

    def __init__(self, db: Database) -> None:
        """Use `db` for every call."""
        self.db = db

    def apply(self, doc_id: str, ops: builtins.list[EditOp], *, label: str,
              expected_version: int | None) -> Document:
        """Apply a person's edit: `ops` in order, one version bump, one undoable change.

        Each op sees the positions the ones before it left. ConflictError when
        `expected_version` is stale (another tab saved first): nothing is written. A new
        edit empties the redo stack. Returns the document after the change.
        """
        if not ops:
            raise InputError("the edit changes nothing: give at least one operation")
        if len(ops) > MAX_OPS_PER_CHANGE:
            raise InputError(f"an edit of {len(ops)} operations is more than the limit of "
                             f"{MAX_OPS_PER_CHANGE}: split it")
        with self.db.session() as session:
            version = row_changes.bump(session, doc_id, expected_version)
            change = _new_change(session, doc_id, label, "edit", version)
            for op in ops:
                _apply_op(session, doc_id, version, change.id, op)
            session.execute(update(ChangeRow)
                            .where(ChangeRow.document_id == doc_id, ChangeRow.state == "undone")
                            .values(state="discarded")
                            .execution_options(synchronize_session=False))
            return row_changes.load_document(session, doc_id)

    def history(self, doc_id: str) -> builtins.list[Change]:
        """The document's accepted edits, undos and redos, oldest first."""
        with self.db.session() as session:
            row_changes.require(session, doc_id)
            rows = session.scalars(select(ChangeRow).where(ChangeRow.document_id == doc_id)
                                   .order_by(ChangeRow.id))
            return [_to_change(row) for row in rows]

    def can_undo(self, doc_id: str) -> bool:
        """Whether an edit is in effect that undo would revert."""
        with self.db.session() as session:
            return _undo_target(session, doc_id) is not None

    def can_redo(self, doc_id: str) -> bool:
        """Whether an undone edit can be made again."""
        with self.db.session() as session:
            return _redo_target(session, doc_id) is not None

    def undo(self, doc_id: str, expected_version: int | None) -> Document:
        """Revert the latest edit still in effect (recorded as an "undo" change)."""
        with self.db.session() as session:
            target = _undo_target(session, doc_id)
            if target is None:
                row_changes.require(session, doc_id)
                raise InputError("nothing to undo: this document has no edit to revert")
            version = row_changes.bump(session, doc_id, expected_version)
            change = _new_change(session, doc_id, f"undo: {target.label}", "undo", version)
            for revision in reversed(_change_revisions(session, target.id)):
                _redo_or_revert(session, doc_id, version, change.id, revision, forward=False)
            target.state, target.undone_at = "undone", utcnow()
            return row_changes.load_document(session, doc_id)

    def redo(self, doc_id: str, expected_version: int | None) -> Document:
        """Make the most recently undone edit again (recorded as a "redo" change)."""
        with self.db.session() as session:
            target = _redo_target(session, doc_id)
            if target is None:
                row_changes.require(session, doc_id)
                raise InputError("nothing to redo: no undone edit is waiting (a new edit "
                                 "after an undo clears the redo list)")
            version = row_changes.bump(session, doc_id, expected_version)
            change = _new_change(session, doc_id, f"redo: {target.label}", "redo", version)
            for revision in _change_revisions(session, target.id):
                _redo_or_revert(session, doc_id, version, change.id, revision, forward=True)
            target.state, target.undone_at = "done", None
            return row_changes.load_document(session, doc_id)

    def state_at(self, doc_id: str, version: int) -> Document:
        """The document as it was at `version` (1..current), rebuilt from its revisions.

        Every change since then is reverted in reverse order on a copy of the block order
        and contents; the title, outline and status are reverted the same way.
        """
        with self.db.session() as session:
            row = row_changes.require(session, doc_id)
            if not 1 <= version <= row.version:
                raise InputError(f"version {version} is outside 1..{row.version} for document "
                                 f"{doc_id}: pick one from its history")
            blocks = row_changes.blocks(session, doc_id)
            order = [block.id for block in blocks]
            contents = {block.id: block_content(block) for block in blocks}
            meta = {"title": row.title, "outline": row.outline, "status": row.status}
            later = session.scalars(select(RevisionRow)
                                    .where(RevisionRow.document_id == doc_id,
                                           RevisionRow.document_version > version)
                                    .order_by(RevisionRow.id.desc()))
            for revision in later:
                _unwind(revision, order, contents, meta)
            doc = to_document(row, [])
            doc.title, doc.status, doc.version = meta["title"], meta["status"], version
            doc.outline = Outline.from_dict(meta["outline"]) if meta["outline"] else None
            doc.blocks = [block_from_content(block_id, contents[block_id])
                          for block_id in order]
            return doc

    def restore(self, doc_id: str, version: int, expected_version: int | None) -> Document:
        """Make the document as it was at `version` again, as one undoable edit."""
        target = self.state_at(doc_id, version)
        with self.db.session() as session:
            current = row_changes.load_document(session, doc_id)
        wanted = {block.id for block in target.blocks}
        ops: builtins.list[EditOp] = [DeleteBlock(block.id) for block in current.blocks
                                      if block.id not in wanted]
        present = {block.id: block for block in current.blocks if block.id in wanted}
        for position, block in enumerate(target.blocks):
            if block.id not in present:
                ops.append(InsertBlock(position, block, keep_id=True))
            else:
                ops.append(update_to(block))
                ops.append(MoveBlock(block.id, position))
        ops.append(UpdateMeta(title=target.title, outline=target.outline))
        return self.apply(doc_id, ops, label=f"restore version {version}",
                          expected_version=expected_version)


def _apply_op(session: Session, doc_id: str, version: int, change_id: int, op: EditOp) -> None:
    if isinstance(op, InsertBlock):
        row_changes.insert_block(session, doc_id, version, change_id, op.position, op.block,
                                 op.keep_id)
    elif isinstance(op, UpdateMeta):
        changes: dict[str, Any] = {}
        if op.title is not None:
            if not op.title.strip():
                raise InputError("the title is empty: give the article a title")
            changes["title"] = op.title
        if op.outline is not None:
            changes["outline"] = op.outline.to_dict()
        if changes:
            row_changes.update_meta(session, doc_id, version, change_id, changes)
    elif isinstance(op, (UpdateBlock, MoveBlock, DeleteBlock)):
        row = row_changes.doc_block(session, doc_id, op.block_id)
        if isinstance(op, UpdateBlock):
            row_changes.update_block(session, row, version, change_id, op)
        elif isinstance(op, MoveBlock):
            row_changes.move_block(session, row, version, change_id, op.position)
        else:
            row_changes.delete_block(session, row, version, change_id)
    else:
        raise InputError(f"{op!r} is not an edit operation")


def _redo_or_revert(session: Session, doc_id: str, version: int, change_id: int,
                    revision: RevisionRow, forward: bool) -> None:
    """Bring the revision's block (or document fields) to its content after the revision
    (forward: redo) or before it (undo): a create and a delete swap roles going back."""
    content = revision.new if forward else revision.old
    if revision.block_id is None:
        if content:
            row_changes.update_meta(session, doc_id, version, change_id, dict(content))
        return
    row = session.get(BlockRow, revision.block_id)
    count = row_changes.block_count(session, doc_id)
    recreate = revision.op == ("create" if forward else "delete")
    remove = revision.op == ("delete" if forward else "create")
    if recreate and content is not None:
        block = block_from_content(revision.block_id, content)
        row_changes.insert_block(session, doc_id, version, change_id,
                                 min(content["position"], count), block, keep_id=True)
    elif row is None or content is None and not remove:
        return  # the block is gone since: nothing to change
    elif remove:
        row_changes.delete_block(session, row, version, change_id)
    elif revision.op == "move":
        row_changes.move_block(session, row, version, change_id,
                               min(content["position"], count - 1))
    else:
        row_changes.update_block(session, row, version, change_id,
                                 update_to(block_from_content(row.id, content)))


def _new_change(session: Session, doc_id: str, label: str, kind: str,
                version: int) -> ChangeRow:
    change = ChangeRow(document_id=doc_id, label=label[:500], kind=kind,
                       version_before=version - 1, version_after=version, state="done",
                       created_at=utcnow())
    session.add(change)
    session.flush()
    return change


def _change_revisions(session: Session, change_id: int) -> builtins.list[RevisionRow]:
    return list(session.scalars(select(RevisionRow).where(RevisionRow.change_id == change_id)
                                .order_by(RevisionRow.id)))


def _undo_target(session: Session, doc_id: str) -> ChangeRow | None:
    """The latest edit in effect (undone edits always form a suffix of the edits)."""
    return session.scalar(select(ChangeRow)
                          .where(ChangeRow.document_id == doc_id, ChangeRow.kind == "edit",
                                 ChangeRow.state == "done")
                          .order_by(ChangeRow.id.desc()).limit(1))


def _redo_target(session: Session, doc_id: str) -> ChangeRow | None:
    """The most recently undone edit: the oldest of the undone suffix."""
    return session.scalar(select(ChangeRow)
                          .where(ChangeRow.document_id == doc_id, ChangeRow.kind == "edit",
                                 ChangeRow.state == "undone")
                          .order_by(ChangeRow.id).limit(1))


def _to_change(row: ChangeRow) -> Change:
    return Change(id=row.id, document_id=row.document_id, label=row.label, kind=row.kind,
                  version_before=row.version_before, version_after=row.version_after,
                  state=row.state, created_at=row.created_at.isoformat())


def _unwind(revision: RevisionRow, order: list[int], contents: dict[int, dict[str, Any]],
            meta: dict[str, Any]) -> None:
    """Revert one revision on an in-memory copy (block order, contents, document fields)."""
    if revision.block_id is None:
        for name, value in (revision.old or {}).items():
            if name in meta:
                meta[name] = value
        return
    block_id = revision.block_id
    if revision.op == "create":
        if block_id in order:
            order.remove(block_id)
        contents.pop(block_id, None)
    elif revision.op == "delete":
        assert revision.old is not None
        order.insert(min(revision.old["position"], len(order)), block_id)
        contents[block_id] = revision.old
    else:
        assert revision.old is not None
        if revision.op == "move" and block_id in order:
            order.remove(block_id)
            order.insert(min(revision.old["position"], len(order)), block_id)
        contents[block_id] = revision.old
