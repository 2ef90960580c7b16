"""Documents and their blocks in the database, returned as composer.types dataclasses.

Every change goes through one pattern (storage/row_changes.py): first bump the document's
`version` with a single conditional UPDATE (which also takes the write lock, so concurrent
saves serialise), then change the rows, then record a `revisions` row holding the block's
content before (and after) the change. A caller that passes `expected_version` and lost the
race gets a ConflictError and nothing is written. Block positions stay contiguous 0..n-1.

People's edits, undo / redo and past versions come from DocumentHistory (storage/history.py),
which DocumentRepository extends, so callers hold one object for a document's whole life.
"""

from __future__ import annotations

import builtins
import secrets
import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from composer.types import (
    DOCUMENT_STATUSES,
    LANGUAGES,
    Block,
    Document,
    DocumentSummary,
    ImageCandidate,
    InputError,
    NotFoundError,
    Outline,
    count_words,
)
from storage import row_changes
from storage.edit_ops import Revision, UpdateBlock
from storage.history import DocumentHistory
from storage.rows import to_block, to_document
from storage.tables import BlockRow, DocumentRow, RevisionRow, utcnow


def new_slug() -> str:
    """An unguessable share slug: 16 random bytes (128 bits), 22 URL-safe characters."""
    return secrets.token_urlsafe(16)


class DocumentRepository(DocumentHistory):
    """Reads and changes documents; see docs/contracts.md (storage/documents.py)."""

    # -- documents -------------------------------------------------------------------------

    def create(self, title: str, instruction: str, language: str, options: dict[str, Any],
               outline: Outline | None = None, owner: str | None = None) -> Document:
        """Store a new document with status "composing", version 1 and an unguessable slug."""
        if language not in LANGUAGES:
            raise InputError(f"language {language!r} is not one of {list(LANGUAGES)}")
        now = utcnow()
        row = DocumentRow(
            id=uuid.uuid4().hex, slug=new_slug(), owner=owner, title=title,
            instruction=instruction, language=language, status="composing",
            options=dict(options), outline=outline.to_dict() if outline else None,
            version=1, created_at=now, updated_at=now,
        )
        with self.db.session() as session:
            session.add(row)
            session.flush()
            new = {"title": title, "language": language, "status": "composing"}
            row_changes.record(session, row.id, None, 1, "create", None, new)
            return to_document(row, [])

    def get(self, doc_id: str) -> Document:
        """The document with its blocks in order; NotFoundError if there is none."""
        with self.db.session() as session:
            row = session.get(DocumentRow, doc_id)
            if row is None:
                raise row_changes.document_not_found(doc_id)
            return to_document(row, row_changes.blocks(session, doc_id))

    def get_by_slug(self, slug: str) -> Document:
        """The document shared under `slug` (the public link); NotFoundError if none."""
        with self.db.session() as session:
            row = session.scalar(select(DocumentRow).where(DocumentRow.slug == slug))
            if row is None:
                raise NotFoundError(f"no document is shared as {slug!r}: check the link")
            return to_document(row, row_changes.blocks(session, row.id))

    def list(self, owner: str | None = None,
             limit: int = 100) -> builtins.list[DocumentSummary]:
        """Summaries of the newest `limit` documents (of `owner`, or of everyone if None)."""
        if limit < 1:
            raise InputError(f"limit {limit} must be at least 1")
        query = select(DocumentRow).order_by(DocumentRow.created_at.desc(),
                                             DocumentRow.id.desc()).limit(limit)
        if owner is not None:
            query = query.where(DocumentRow.owner == owner)
        with self.db.session() as session:
            rows = list(session.scalars(query))
            words = _word_counts(session, [row.id for row in rows])
        return [
            DocumentSummary(id=row.id, title=row.title, status=row.status,
                            language=row.language, created_at=row.created_at.isoformat(),
                            updated_at=row.updated_at.isoformat(), words=words.get(row.id, 0))
            for row in rows
        ]

    def update_meta(self, doc_id: str, *, title: str | None = None,
                    outline: Outline | None = None, status: str | None = None,
                    options: dict[str, Any] | None = None,
                    expected_version: int | None = None) -> Document:
        """Change the title, outline, status or options (None leaves a field as it is)."""
        if status is not None and status not in DOCUMENT_STATUSES:
            raise InputError(f"status {status!r} is not one of {list(DOCUMENT_STATUSES)}")
        changes: dict[str, Any] = {}
        if title is not None:
            changes["title"] = title
        if outline is not None:
            changes["outline"] = outline.to_dict()
        if status is not None:
            changes["status"] = status
        if options is not None:
            changes["options"] = dict(options)
        with self.db.session() as session:
            version = row_changes.bump(session, doc_id, expected_version)
            row_changes.update_meta(session, doc_id, version, None, changes)
            return row_changes.load_document(session, doc_id)

    def duplicate(self, doc_id: str, owner: str | None = None, suffix: str = " (copy)") -> Document:
        """A new document with the same content (blocks copied), not shared, for `owner`."""
        source = self.get(doc_id)
        copy = self.create(source.title + suffix, source.instruction, source.language,
                           source.options, source.outline, owner)
        if source.blocks:
            self.append_blocks(copy.id, source.blocks)
        status = "done" if source.status == "composing" else source.status
        return self.update_meta(copy.id, status=status)

    def delete(self, doc_id: str) -> None:
        """Delete a document; its blocks and revisions go with it (ON DELETE CASCADE)."""
        with self.db.session() as session:
            result = session.execute(delete(DocumentRow).where(DocumentRow.id == doc_id))
            if row_changes.rowcount(result) == 0:
                raise row_changes.document_not_found(doc_id)

    def mark_stale_composing(self, older_than_seconds: float) -> int:
        """Mark documents still "composing" but untouched that long as "interrupted".

        Called at start-up: a composition whose process died never finishes. Returns how many
        documents were marked.
        """
        cutoff = utcnow() - timedelta(seconds=older_than_seconds)
        stale = (DocumentRow.status == "composing") & (DocumentRow.updated_at < cutoff)
        marked = 0
        with self.db.session() as session:
            for doc_id in list(session.scalars(select(DocumentRow.id).where(stale))):
                result = session.execute(
                    update(DocumentRow).where(DocumentRow.id == doc_id, stale)
                    .values(status="interrupted", version=DocumentRow.version + 1,
                            updated_at=utcnow())
                    .execution_options(synchronize_session=False)
                )
                if row_changes.rowcount(result):
                    version = row_changes.current_version(session, doc_id)
                    row_changes.record(session, doc_id, None, version, "update",
                                       {"status": "composing"}, {"status": "interrupted"})
                    marked += 1
        return marked

    def revisions(self, doc_id: str) -> builtins.list[Revision]:
        """The document's history, oldest first."""
        with self.db.session() as session:
            if session.get(DocumentRow, doc_id) is None:
                raise row_changes.document_not_found(doc_id)
            rows = session.scalars(select(RevisionRow).where(RevisionRow.document_id == doc_id)
                                   .order_by(RevisionRow.id))
            return [
                Revision(id=row.id, document_id=row.document_id, block_id=row.block_id,
                         document_version=row.document_version, op=row.op, old=row.old,
                         new=row.new, created_at=row.created_at.isoformat())
                for row in rows
            ]

    # -- blocks ----------------------------------------------------------------------------

    def append_blocks(self, doc_id: str, blocks: builtins.list[Block],
                      expected_version: int | None = None) -> builtins.list[Block]:
        """Add blocks after the last one (one version bump for the batch); ids filled in."""
        with self.db.session() as session:
            version = row_changes.bump(session, doc_id, expected_version)
            start = row_changes.block_count(session, doc_id)
            return [to_block(row_changes.insert_block(session, doc_id, version, None,
                                                      start + offset, block))
                    for offset, block in enumerate(blocks)]

    def insert_block(self, doc_id: str, position: int, block: Block,
                     expected_version: int | None = None) -> Block:
        """Insert a block at `position` (0..n); the blocks from there on move down by one."""
        with self.db.session() as session:
            version = row_changes.bump(session, doc_id, expected_version)
            return to_block(row_changes.insert_block(session, doc_id, version, None, position,
                                                     block))

    def update_block(self, block_id: int, *, text: str | None = None,
                     caption: str | None = None, image_id: str | None = None,
                     candidates: builtins.list[ImageCandidate] | None = None,
                     section: int | None = None, origin: str | None = None,
                     expected_version: int | None = None) -> Block:
        """Change a block's content; None leaves a field as it is, image_id "" clears it.

        `text` applies to text blocks; `caption`, `image_id` and `candidates` to image blocks.
        """
        change = UpdateBlock(block_id, text=text, caption=caption, image_id=image_id,
                             candidates=candidates, section=section, origin=origin)
        with self.db.session() as session:
            row, version = row_changes.lock_block(session, block_id, expected_version)
            return to_block(row_changes.update_block(session, row, version, None, change))

    def move_block(self, block_id: int, position: int,
                   expected_version: int | None = None) -> Block:
        """Move a block to `position` (0..n-1); the blocks in between shift by one."""
        with self.db.session() as session:
            row, version = row_changes.lock_block(session, block_id, expected_version)
            return to_block(row_changes.move_block(session, row, version, None, position))

    def delete_block(self, block_id: int, expected_version: int | None = None) -> None:
        """Delete a block; the later blocks move up by one. Its history stays in revisions."""
        with self.db.session() as session:
            row, version = row_changes.lock_block(session, block_id, expected_version)
            row_changes.delete_block(session, row, version, None)


def _word_counts(session: Session, doc_ids: builtins.list[str]) -> dict[str, int]:
    """{document id: words in its text blocks} for those documents, one query."""
    counts: dict[str, int] = {}
    if not doc_ids:
        return counts
    rows = session.execute(select(BlockRow.document_id, BlockRow.text)
                           .where(BlockRow.document_id.in_(doc_ids), BlockRow.kind == "text"))
    for doc_id, text in rows:
        counts[doc_id] = counts.get(doc_id, 0) + count_words(text)
    return counts
