"""Changes to one document's rows inside the caller's transaction, each recording its revision.

The pattern every write follows (storage/documents.py, storage/history.py): `bump` the
document's version first (a single conditional UPDATE, which also takes the write lock, so
concurrent saves serialise; ConflictError when `expected_version` is stale), then change rows
with `insert_block` / `update_block` / `move_block` / `delete_block` / `update_meta`, each of
which adds a `revisions` row holding the content before and after. Block positions stay
contiguous 0..n-1. `change_id` ties a revision to the undoable change it belongs to (None:
outside an edit).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, cast

from sqlalchemy import func, select, update
from sqlalchemy.engine import CursorResult, Result
from sqlalchemy.orm import Session

from composer.types import Block, ConflictError, Document, InputError, NotFoundError
from storage.edit_ops import UpdateBlock
from storage.rows import (
    block_content,
    check_caption,
    check_image,
    check_origin,
    new_block_row,
    to_document,
)
from storage.tables import BlockRow, DocumentRow, RevisionRow, utcnow


def rowcount(result: Result[Any]) -> int:
    """Rows an UPDATE or DELETE matched (execute() is typed as returning a plain Result)."""
    return cast(CursorResult[Any], result).rowcount


def document_not_found(doc_id: str) -> NotFoundError:
    """The error for an unknown document id."""
    return NotFoundError(f"no document with id {doc_id!r}: it may have been deleted; "
                         "list the documents to find the right id")


def block_not_found(block_id: int) -> NotFoundError:
    """The error for an unknown block id."""
    return NotFoundError(f"no block with id {block_id!r}: it may have been deleted; "
                         "reload the document")


# -- reads -----------------------------------------------------------------------------------

def require(session: Session, doc_id: str) -> DocumentRow:
    """The document's row; NotFoundError if there is none."""
    row = session.get(DocumentRow, doc_id)
    if row is None:
        raise document_not_found(doc_id)
    return row


def load_document(session: Session, doc_id: str) -> Document:
    """The document with its blocks as this transaction sees them now."""
    session.flush()
    return to_document(require(session, doc_id), blocks(session, doc_id))


def blocks(session: Session, doc_id: str) -> list[BlockRow]:
    """The document's block rows in position order."""
    return list(session.scalars(select(BlockRow).where(BlockRow.document_id == doc_id)
                                .order_by(BlockRow.position)))


def block_count(session: Session, doc_id: str) -> int:
    """How many blocks the document has."""
    return session.scalar(select(func.count()).select_from(BlockRow)
                          .where(BlockRow.document_id == doc_id)) or 0


def doc_block(session: Session, doc_id: str, block_id: int) -> BlockRow:
    """The block row `block_id` of this document; NotFoundError otherwise."""
    row = session.get(BlockRow, block_id)
    if row is None or row.document_id != doc_id:
        raise block_not_found(block_id)
    return row


def current_version(session: Session, doc_id: str) -> int:
    """The document's current version."""
    current = session.scalar(select(DocumentRow.version).where(DocumentRow.id == doc_id))
    assert current is not None
    return current


# -- the version lock --------------------------------------------------------------------------

def bump(session: Session, doc_id: str, expected_version: int | None) -> int:
    """Bump the version (first write: takes the lock); ConflictError if it was stale."""
    query = update(DocumentRow).where(DocumentRow.id == doc_id)
    if expected_version is not None:
        query = query.where(DocumentRow.version == expected_version)
    result = session.execute(
        query.values(version=DocumentRow.version + 1, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    if rowcount(result) == 0:
        current = session.scalar(select(DocumentRow.version).where(DocumentRow.id == doc_id))
        if current is None:
            raise document_not_found(doc_id)
        raise ConflictError(f"document {doc_id} was changed elsewhere (version {current}, "
                            f"you had {expected_version}): reload it")
    return current_version(session, doc_id)


def lock_block(session: Session, block_id: int,
               expected_version: int | None) -> tuple[BlockRow, int]:
    """Bump the block's document, then load the block (fresh, under the lock)."""
    doc_id = session.scalar(select(BlockRow.document_id).where(BlockRow.id == block_id))
    if doc_id is None:
        raise block_not_found(block_id)
    new_version = bump(session, doc_id, expected_version)
    row = session.get(BlockRow, block_id)
    if row is None:  # deleted between the two reads
        raise block_not_found(block_id)
    return row, new_version


# -- row changes (each records its revision) ---------------------------------------------------

def record(session: Session, doc_id: str, block_id: int | None, document_version: int, op: str,
           old: dict[str, Any] | None, new: dict[str, Any] | None,
           change_id: int | None = None) -> None:
    """Add the revisions row of one change (`old` None for a create, `new` None for a delete)."""
    session.add(RevisionRow(document_id=doc_id, block_id=block_id,
                            document_version=document_version, op=op, old=old, new=new,
                            created_at=utcnow(), change_id=change_id))
    session.flush()


def insert_block(session: Session, doc_id: str, version: int, change_id: int | None,
           position: int, block: Block, keep_id: bool = False) -> BlockRow:
    """Insert a block at `position` (0..n), shifting later ones; `keep_id` re-uses block.id."""
    count = block_count(session, doc_id)
    if not 0 <= position <= count:
        raise InputError(f"position {position} is outside 0..{count} for document "
                         f"{doc_id}: pick a position in that range")
    shift(session, doc_id, position, count, +1)
    row = new_block_row(session, doc_id, position, block)
    if keep_id and block.id is not None and session.get(BlockRow, block.id) is None:
        row.id = block.id
    session.add(row)
    session.flush()
    record(session, doc_id, row.id, version, "create", None, block_content(row), change_id)
    return row


def update_block(session: Session, row: BlockRow, version: int, change_id: int | None,
                 change: UpdateBlock) -> BlockRow:
    """Apply an UpdateBlock to `row`; inside an edit, an update that changes nothing is not
    recorded."""
    fields = {"text": change.text} if row.kind == "text" else {
        "caption": change.caption, "image_id": change.image_id,
        "candidates": change.candidates}
    wrong = [name for name, value in
             {"text": change.text, "caption": change.caption, "image_id": change.image_id,
              "candidates": change.candidates}.items()
             if value is not None and name not in fields]
    if wrong:
        raise InputError(f"block {row.id} is a {row.kind} block: it has no {wrong[0]}")
    old = block_content(row)
    if change.text is not None:
        row.text = change.text
        row.checks = change.checks
    if change.caption is not None:
        check_caption(change.caption)
        row.caption = change.caption
    if change.image_id is not None:
        check_image(session, change.image_id or None)
        row.image_id = change.image_id or None
    if change.candidates is not None:
        row.candidates = [asdict(candidate) for candidate in change.candidates]
    if change.section is not None:
        row.section = change.section
    if change.origin is not None:
        check_origin(change.origin)
        row.origin = change.origin
    new = block_content(row)
    if new != old or change_id is None:
        row.updated_at = utcnow()
        record(session, row.document_id, row.id, version, "update", old, new, change_id)
    return row


def move_block(session: Session, row: BlockRow, version: int, change_id: int | None,
         position: int) -> BlockRow:
    """Move `row` to `position` (0..n-1); the blocks in between shift by one."""
    count = block_count(session, row.document_id)
    if not 0 <= position < count:
        raise InputError(f"position {position} is outside 0..{count - 1} for document "
                         f"{row.document_id}: pick a position in that range")
    if position == row.position and change_id is not None:
        return row
    old = block_content(row)
    if position < row.position:
        shift(session, row.document_id, position, row.position, +1)
    elif position > row.position:
        shift(session, row.document_id, row.position + 1, position + 1, -1)
    row.position = position
    row.updated_at = utcnow()
    record(session, row.document_id, row.id, version, "move", old, block_content(row),
           change_id)
    return row


def delete_block(session: Session, row: BlockRow, version: int, change_id: int | None) -> None:
    """Delete `row`; the later blocks move up by one."""
    doc_id, position, old = row.document_id, row.position, block_content(row)
    session.delete(row)
    session.flush()
    shift(session, doc_id, position + 1, None, -1)
    record(session, doc_id, row.id, version, "delete", old, None, change_id)


def update_meta(session: Session, doc_id: str, version: int, change_id: int | None,
                changes: dict[str, Any]) -> None:
    """Set document fields (title, outline, status, options); no-op edits are not recorded."""
    row = session.get(DocumentRow, doc_id)
    assert row is not None
    old = {name: getattr(row, name) for name in changes}
    if old == changes and change_id is not None:
        return
    for name, value in changes.items():
        setattr(row, name, value)
    record(session, doc_id, None, version, "update", old, changes, change_id)


def shift(session: Session, doc_id: str, start: int, stop: int | None, delta: int) -> None:
    """Add `delta` to the positions in [start, stop) (stop None: to the end)."""
    where = [BlockRow.document_id == doc_id, BlockRow.position >= start]
    if stop is not None:
        where.append(BlockRow.position < stop)
    session.execute(update(BlockRow).where(*where)
                    .values(position=BlockRow.position + delta)
                    .execution_options(synchronize_session=False))
