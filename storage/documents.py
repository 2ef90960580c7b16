"""Documents and their blocks in the database, returned as composer.types dataclasses.

Every change goes through one pattern: first bump the document's `version` with a single
conditional UPDATE (which also takes the write lock, so concurrent saves serialise), then
change the rows, then record a `revisions` row holding the block's content before (and
after) the change. A caller that passes `expected_version` and lost the race gets a
ConflictError and nothing is written. Block positions stay contiguous 0..n-1.
"""

from __future__ import annotations

import builtins
import secrets
import uuid
from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import Any, cast

from sqlalchemy import delete, func, select, update
from sqlalchemy.engine import CursorResult, Result
from sqlalchemy.orm import Session

from composer.types import (
    DOCUMENT_STATUSES,
    LANGUAGES,
    Block,
    ConflictError,
    Document,
    DocumentSummary,
    ImageCandidate,
    InputError,
    NotFoundError,
    Outline,
    count_words,
)
from storage.db import Database
from storage.rows import (
    block_content,
    check_caption,
    check_image,
    new_block_row,
    to_block,
    to_document,
)
from storage.tables import BlockRow, DocumentRow, RevisionRow, utcnow


@dataclass
class Revision:
    """One recorded change: `old` is the content before (None for a create), `new` after."""

    id: int
    document_id: str
    block_id: int | None
    document_version: int
    op: str
    old: dict[str, Any] | None
    new: dict[str, Any] | None
    created_at: str


def new_slug() -> str:
    """An unguessable share slug: 16 random bytes (128 bits), 22 URL-safe characters."""
    return secrets.token_urlsafe(16)


def _rowcount(result: Result[Any]) -> int:
    """Rows an UPDATE or DELETE matched (execute() is typed as returning a plain Result)."""
    return cast(CursorResult[Any], result).rowcount


def _document_not_found(doc_id: str) -> NotFoundError:
    return NotFoundError(f"no document with id {doc_id!r}: it may have been deleted; "
                         "list the documents to find the right id")


def _block_not_found(block_id: int) -> NotFoundError:
    return NotFoundError(f"no block with id {block_id!r}: it may have been deleted; "
                         "reload the document")


class DocumentRepository:
    """Reads and changes documents; see docs/contracts.md (storage/documents.py)."""

    def __init__(self, db: Database) -> None:
        """Use `db` for every call; each method runs in its own transaction."""
        self.db = db

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
            self._record(session, row.id, None, 1, "create", None, new)
            return to_document(row, [])

    def get(self, doc_id: str) -> Document:
        """The document with its blocks in order; NotFoundError if there is none."""
        with self.db.session() as session:
            row = session.get(DocumentRow, doc_id)
            if row is None:
                raise _document_not_found(doc_id)
            return to_document(row, self._blocks(session, doc_id))

    def get_by_slug(self, slug: str) -> Document:
        """The document shared under `slug` (the public link); NotFoundError if none."""
        with self.db.session() as session:
            row = session.scalar(select(DocumentRow).where(DocumentRow.slug == slug))
            if row is None:
                raise NotFoundError(f"no document is shared as {slug!r}: check the link")
            return to_document(row, self._blocks(session, row.id))

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
            words = self._word_counts(session, [row.id for row in rows])
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
            version = self._bump(session, doc_id, expected_version)
            row = session.get(DocumentRow, doc_id)
            assert row is not None
            old = {name: getattr(row, name) for name in changes}
            for name, value in changes.items():
                setattr(row, name, value)
            self._record(session, doc_id, None, version, "update", old, changes)
            return to_document(row, self._blocks(session, doc_id))

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
            if _rowcount(result) == 0:
                raise _document_not_found(doc_id)

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
                if _rowcount(result):
                    version = self._version(session, doc_id)
                    self._record(session, doc_id, None, version, "update",
                                 {"status": "composing"}, {"status": "interrupted"})
                    marked += 1
        return marked

    def revisions(self, doc_id: str) -> builtins.list[Revision]:
        """The document's history, oldest first."""
        with self.db.session() as session:
            if session.get(DocumentRow, doc_id) is None:
                raise _document_not_found(doc_id)
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
            version = self._bump(session, doc_id, expected_version)
            start = self._block_count(session, doc_id)
            rows = [new_block_row(session, doc_id, start + offset, block)
                    for offset, block in enumerate(blocks)]
            session.add_all(rows)
            session.flush()
            for row in rows:
                self._record(session, doc_id, row.id, version, "create", None,
                             block_content(row))
            return [to_block(row) for row in rows]

    def insert_block(self, doc_id: str, position: int, block: Block,
                     expected_version: int | None = None) -> Block:
        """Insert a block at `position` (0..n); the blocks from there on move down by one."""
        with self.db.session() as session:
            version = self._bump(session, doc_id, expected_version)
            count = self._block_count(session, doc_id)
            if not 0 <= position <= count:
                raise InputError(f"position {position} is outside 0..{count} for document "
                                 f"{doc_id}: pick a position in that range")
            self._shift(session, doc_id, position, count, +1)
            row = new_block_row(session, doc_id, position, block)
            session.add(row)
            session.flush()
            self._record(session, doc_id, row.id, version, "create", None, block_content(row))
            return to_block(row)

    def update_block(self, block_id: int, *, text: str | None = None,
                     caption: str | None = None, image_id: str | None = None,
                     candidates: builtins.list[ImageCandidate] | None = None,
                     section: int | None = None,
                     expected_version: int | None = None) -> Block:
        """Change a block's content; None leaves a field as it is, image_id "" clears it.

        `text` applies to text blocks; `caption`, `image_id` and `candidates` to image blocks.
        """
        with self.db.session() as session:
            row, version = self._lock_block(session, block_id, expected_version)
            fields = {"text": text} if row.kind == "text" else {
                "caption": caption, "image_id": image_id, "candidates": candidates}
            wrong = [name for name, value in
                     {"text": text, "caption": caption, "image_id": image_id,
                      "candidates": candidates}.items()
                     if value is not None and name not in fields]
            if wrong:
                raise InputError(f"block {block_id} is a {row.kind} block: it has no {wrong[0]}")
            old = block_content(row)
            if text is not None:
                row.text = text
            if caption is not None:
                check_caption(caption)
                row.caption = caption
            if image_id is not None:
                check_image(session, image_id or None)
                row.image_id = image_id or None
            if candidates is not None:
                row.candidates = [asdict(candidate) for candidate in candidates]
            if section is not None:
                row.section = section
            row.updated_at = utcnow()
            self._record(session, row.document_id, block_id, version, "update", old,
                         block_content(row))
            return to_block(row)

    def move_block(self, block_id: int, position: int,
                   expected_version: int | None = None) -> Block:
        """Move a block to `position` (0..n-1); the blocks in between shift by one."""
        with self.db.session() as session:
            row, version = self._lock_block(session, block_id, expected_version)
            count = self._block_count(session, row.document_id)
            if not 0 <= position < count:
                raise InputError(f"position {position} is outside 0..{count - 1} for document "
                                 f"{row.document_id}: pick a position in that range")
            old = block_content(row)
            if position < row.position:
                self._shift(session, row.document_id, position, row.position, +1)
            elif position > row.position:
                self._shift(session, row.document_id, row.position + 1, position + 1, -1)
            row.position = position
            row.updated_at = utcnow()
            self._record(session, row.document_id, block_id, version, "move", old,
                         block_content(row))
            return to_block(row)

    def delete_block(self, block_id: int, expected_version: int | None = None) -> None:
        """Delete a block; the later blocks move up by one. Its history stays in revisions."""
        with self.db.session() as session:
            row, version = self._lock_block(session, block_id, expected_version)
            doc_id, position, old = row.document_id, row.position, block_content(row)
            session.delete(row)
            session.flush()
            self._shift(session, doc_id, position + 1, None, -1)
            self._record(session, doc_id, block_id, version, "delete", old, None)

    # -- helpers ---------------------------------------------------------------------------

    @staticmethod
    def _bump(session: Session, doc_id: str, expected_version: int | None) -> int:
        """Bump the version (first write: takes the lock); ConflictError if it was stale."""
        query = update(DocumentRow).where(DocumentRow.id == doc_id)
        if expected_version is not None:
            query = query.where(DocumentRow.version == expected_version)
        result = session.execute(
            query.values(version=DocumentRow.version + 1, updated_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        if _rowcount(result) == 0:
            current = session.scalar(select(DocumentRow.version).where(DocumentRow.id == doc_id))
            if current is None:
                raise _document_not_found(doc_id)
            raise ConflictError(f"document {doc_id} was changed elsewhere (version {current}, "
                                f"you had {expected_version}): reload it")
        return DocumentRepository._version(session, doc_id)

    @staticmethod
    def _version(session: Session, doc_id: str) -> int:
        version = session.scalar(select(DocumentRow.version).where(DocumentRow.id == doc_id))
        assert version is not None
        return version

    def _lock_block(self, session: Session, block_id: int,
                    expected_version: int | None) -> tuple[BlockRow, int]:
        """Bump the block's document, then load the block (fresh, under the lock)."""
        doc_id = session.scalar(select(BlockRow.document_id).where(BlockRow.id == block_id))
        if doc_id is None:
            raise _block_not_found(block_id)
        version = self._bump(session, doc_id, expected_version)
        row = session.get(BlockRow, block_id)
        if row is None:  # deleted between the two reads
            raise _block_not_found(block_id)
        return row, version

    @staticmethod
    def _blocks(session: Session, doc_id: str) -> builtins.list[BlockRow]:
        return list(session.scalars(select(BlockRow).where(BlockRow.document_id == doc_id)
                                    .order_by(BlockRow.position)))

    @staticmethod
    def _block_count(session: Session, doc_id: str) -> int:
        return session.scalar(select(func.count()).select_from(BlockRow)
                              .where(BlockRow.document_id == doc_id)) or 0

    @staticmethod
    def _shift(session: Session, doc_id: str, start: int, stop: int | None, delta: int) -> None:
        """Add `delta` to the positions in [start, stop) (stop None: to the end)."""
        where = [BlockRow.document_id == doc_id, BlockRow.position >= start]
        if stop is not None:
            where.append(BlockRow.position < stop)
        session.execute(update(BlockRow).where(*where)
                        .values(position=BlockRow.position + delta)
                        .execution_options(synchronize_session=False))

    @staticmethod
    def _word_counts(session: Session, doc_ids: builtins.list[str]) -> dict[str, int]:
        counts: dict[str, int] = {}
        if not doc_ids:
            return counts
        rows = session.execute(select(BlockRow.document_id, BlockRow.text)
                               .where(BlockRow.document_id.in_(doc_ids), BlockRow.kind == "text"))
        for doc_id, text in rows:
            counts[doc_id] = counts.get(doc_id, 0) + count_words(text)
        return counts

    @staticmethod
    def _record(session: Session, doc_id: str, block_id: int | None, version: int, op: str,
                old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
        session.add(RevisionRow(document_id=doc_id, block_id=block_id, document_version=version,
                                op=op, old=old, new=new, created_at=utcnow()))
