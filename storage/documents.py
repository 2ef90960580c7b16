"""Documents and their blocks in the database, returned as composer.types dataclasses.

Every change goes through one pattern: first bump the document's `version` with a single
conditional UPDATE (which also takes the write lock, so concurrent saves serialise), then
change the rows, then record a `revisions` row holding the block's content before (and
after) the change. A caller that passes `expected_version` and lost the race gets a
ConflictError and nothing is written. Block positions stay contiguous 0..n-1.

People's edits go through `apply`: a list of edit operations (InsertBlock, UpdateBlock,
DeleteBlock, MoveBlock, UpdateMeta) run in one transaction with one version bump and recorded
as one `changes` row, the unit of undo / redo. Undo applies the inverse of a change's
revisions, redo applies them again; both are recorded as changes of their own, so the
revisions always replay: `state_at(version)` rebuilds the document as it was at any version.
"""

from __future__ import annotations

import builtins
import secrets
import uuid
from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import Any, Union, cast

from sqlalchemy import delete, func, select, update
from sqlalchemy.engine import CursorResult, Result
from sqlalchemy.orm import Session

from composer.types import (
    DOCUMENT_STATUSES,
    LANGUAGES,
    Block,
    Change,
    ConflictError,
    Document,
    DocumentSummary,
    ImageBlock,
    ImageCandidate,
    InputError,
    NotFoundError,
    Outline,
    TextBlock,
    count_words,
)
from storage.db import Database
from storage.rows import (
    block_content,
    check_caption,
    check_image,
    check_origin,
    new_block_row,
    to_block,
    to_document,
)
from storage.tables import BlockRow, ChangeRow, DocumentRow, RevisionRow, utcnow

MAX_OPS_PER_CHANGE = 500


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


@dataclass
class InsertBlock:
    """Insert `block` at `position` (0..n at that point of the change)."""

    position: int
    block: Block
    keep_id: bool = False  # re-create a deleted block under its old id (undo, restore)


@dataclass
class UpdateBlock:
    """Change a block's content; None leaves a field as it is, image_id "" clears it."""

    block_id: int
    text: str | None = None
    caption: str | None = None
    image_id: str | None = None
    candidates: list[ImageCandidate] | None = None
    section: int | None = None
    origin: str | None = None
    # With `text`: the checks the new text passed (None: a person's text, no checks).
    checks: dict[str, Any] | None = None


@dataclass
class DeleteBlock:
    """Delete a block; the later ones move up."""

    block_id: int


@dataclass
class MoveBlock:
    """Move a block to `position` (0..n-1); the ones in between shift by one."""

    block_id: int
    position: int


@dataclass
class UpdateMeta:
    """Change the document's title or outline (None leaves it as it is)."""

    title: str | None = None
    outline: Outline | None = None


EditOp = Union[InsertBlock, UpdateBlock, DeleteBlock, MoveBlock, UpdateMeta]


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
            self._update_meta(session, doc_id, version, None, changes)
            return self._document(session, doc_id)

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
            return [to_block(self._insert(session, doc_id, version, None, start + offset, block))
                    for offset, block in enumerate(blocks)]

    def insert_block(self, doc_id: str, position: int, block: Block,
                     expected_version: int | None = None) -> Block:
        """Insert a block at `position` (0..n); the blocks from there on move down by one."""
        with self.db.session() as session:
            version = self._bump(session, doc_id, expected_version)
            return to_block(self._insert(session, doc_id, version, None, position, block))

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
            row, version = self._lock_block(session, block_id, expected_version)
            return to_block(self._update(session, row, version, None, change))

    def move_block(self, block_id: int, position: int,
                   expected_version: int | None = None) -> Block:
        """Move a block to `position` (0..n-1); the blocks in between shift by one."""
        with self.db.session() as session:
            row, version = self._lock_block(session, block_id, expected_version)
            return to_block(self._move(session, row, version, None, position))

    def delete_block(self, block_id: int, expected_version: int | None = None) -> None:
        """Delete a block; the later blocks move up by one. Its history stays in revisions."""
        with self.db.session() as session:
            row, version = self._lock_block(session, block_id, expected_version)
            self._delete(session, row, version, None)

    # -- edits, undo, redo, history ---------------------------------------------------------

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
            version = self._bump(session, doc_id, expected_version)
            change = self._new_change(session, doc_id, label, "edit", version)
            for op in ops:
                self._apply_op(session, doc_id, version, change.id, op)
            session.execute(update(ChangeRow)
                            .where(ChangeRow.document_id == doc_id, ChangeRow.state == "undone")
                            .values(state="discarded")
                            .execution_options(synchronize_session=False))
            return self._document(session, doc_id)

    def history(self, doc_id: str) -> builtins.list[Change]:
        """The document's accepted edits, undos and redos, oldest first."""
        with self.db.session() as session:
            self._require(session, doc_id)
            rows = session.scalars(select(ChangeRow).where(ChangeRow.document_id == doc_id)
                                   .order_by(ChangeRow.id))
            return [_to_change(row) for row in rows]

    def can_undo(self, doc_id: str) -> bool:
        """Whether an edit is in effect that undo would revert."""
        with self.db.session() as session:
            return self._undo_target(session, doc_id) is not None

    def can_redo(self, doc_id: str) -> bool:
        """Whether an undone edit can be made again."""
        with self.db.session() as session:
            return self._redo_target(session, doc_id) is not None

    def undo(self, doc_id: str, expected_version: int | None) -> Document:
        """Revert the latest edit still in effect (recorded as an "undo" change)."""
        with self.db.session() as session:
            target = self._undo_target(session, doc_id)
            if target is None:
                self._require(session, doc_id)
                raise InputError("nothing to undo: this document has no edit to revert")
            version = self._bump(session, doc_id, expected_version)
            change = self._new_change(session, doc_id, f"undo: {target.label}", "undo", version)
            for revision in reversed(self._change_revisions(session, target.id)):
                self._revert(session, doc_id, version, change.id, revision)
            target.state, target.undone_at = "undone", utcnow()
            return self._document(session, doc_id)

    def redo(self, doc_id: str, expected_version: int | None) -> Document:
        """Make the most recently undone edit again (recorded as a "redo" change)."""
        with self.db.session() as session:
            target = self._redo_target(session, doc_id)
            if target is None:
                self._require(session, doc_id)
                raise InputError("nothing to redo: no undone edit is waiting (a new edit "
                                 "after an undo clears the redo list)")
            version = self._bump(session, doc_id, expected_version)
            change = self._new_change(session, doc_id, f"redo: {target.label}", "redo", version)
            for revision in self._change_revisions(session, target.id):
                self._replay(session, doc_id, version, change.id, revision)
            target.state, target.undone_at = "done", None
            return self._document(session, doc_id)

    def state_at(self, doc_id: str, version: int) -> Document:
        """The document as it was at `version` (1..current), rebuilt from its revisions.

        Every change since then is reverted in reverse order on a copy of the block order
        and contents; the title, outline and status are reverted the same way.
        """
        with self.db.session() as session:
            row = self._require(session, doc_id)
            if not 1 <= version <= row.version:
                raise InputError(f"version {version} is outside 1..{row.version} for document "
                                 f"{doc_id}: pick one from its history")
            blocks = self._blocks(session, doc_id)
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
            doc.blocks = [_block_from_content(block_id, contents[block_id])
                          for block_id in order]
            return doc

    def restore(self, doc_id: str, version: int, expected_version: int | None) -> Document:
        """Make the document as it was at `version` again, as one undoable edit."""
        target = self.state_at(doc_id, version)
        current = self.get(doc_id)
        wanted = {block.id for block in target.blocks}
        ops: builtins.list[EditOp] = [DeleteBlock(block.id) for block in current.blocks
                                      if block.id not in wanted]
        present = {block.id: block for block in current.blocks if block.id in wanted}
        for position, block in enumerate(target.blocks):
            if block.id not in present:
                ops.append(InsertBlock(position, block, keep_id=True))
            else:
                ops.append(_update_to(block))
                ops.append(MoveBlock(block.id, position))
        ops.append(UpdateMeta(title=target.title, outline=target.outline))
        return self.apply(doc_id, ops, label=f"restore version {version}",
                          expected_version=expected_version)

    # -- row changes (each records its revision) ------------------------------------------

    def _insert(self, session: Session, doc_id: str, version: int, change_id: int | None,
                position: int, block: Block, keep_id: bool = False) -> BlockRow:
        count = self._block_count(session, doc_id)
        if not 0 <= position <= count:
            raise InputError(f"position {position} is outside 0..{count} for document "
                             f"{doc_id}: pick a position in that range")
        self._shift(session, doc_id, position, count, +1)
        row = new_block_row(session, doc_id, position, block)
        if keep_id and block.id is not None and session.get(BlockRow, block.id) is None:
            row.id = block.id
        session.add(row)
        session.flush()
        self._record(session, doc_id, row.id, version, "create", None, block_content(row),
                     change_id)
        return row

    def _update(self, session: Session, row: BlockRow, version: int, change_id: int | None,
                change: UpdateBlock) -> BlockRow:
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
            self._record(session, row.document_id, row.id, version, "update", old, new,
                         change_id)
        return row

    def _move(self, session: Session, row: BlockRow, version: int, change_id: int | None,
              position: int) -> BlockRow:
        count = self._block_count(session, row.document_id)
        if not 0 <= position < count:
            raise InputError(f"position {position} is outside 0..{count - 1} for document "
                             f"{row.document_id}: pick a position in that range")
        if position == row.position and change_id is not None:
            return row
        old = block_content(row)
        if position < row.position:
            self._shift(session, row.document_id, position, row.position, +1)
        elif position > row.position:
            self._shift(session, row.document_id, row.position + 1, position + 1, -1)
        row.position = position
        row.updated_at = utcnow()
        self._record(session, row.document_id, row.id, version, "move", old,
                     block_content(row), change_id)
        return row

    def _delete(self, session: Session, row: BlockRow, version: int,
                change_id: int | None) -> None:
        doc_id, position, old = row.document_id, row.position, block_content(row)
        session.delete(row)
        session.flush()
        self._shift(session, doc_id, position + 1, None, -1)
        self._record(session, doc_id, row.id, version, "delete", old, None, change_id)

    def _update_meta(self, session: Session, doc_id: str, version: int,
                     change_id: int | None, changes: dict[str, Any]) -> None:
        row = session.get(DocumentRow, doc_id)
        assert row is not None
        old = {name: getattr(row, name) for name in changes}
        if old == changes and change_id is not None:
            return
        for name, value in changes.items():
            setattr(row, name, value)
        self._record(session, doc_id, None, version, "update", old, changes, change_id)

    def _apply_op(self, session: Session, doc_id: str, version: int, change_id: int,
                  op: EditOp) -> None:
        if isinstance(op, InsertBlock):
            self._insert(session, doc_id, version, change_id, op.position, op.block, op.keep_id)
        elif isinstance(op, UpdateMeta):
            changes: dict[str, Any] = {}
            if op.title is not None:
                if not op.title.strip():
                    raise InputError("the title is empty: give the article a title")
                changes["title"] = op.title
            if op.outline is not None:
                changes["outline"] = op.outline.to_dict()
            if changes:
                self._update_meta(session, doc_id, version, change_id, changes)
        elif isinstance(op, (UpdateBlock, MoveBlock, DeleteBlock)):
            row = self._doc_block(session, doc_id, op.block_id)
            if isinstance(op, UpdateBlock):
                self._update(session, row, version, change_id, op)
            elif isinstance(op, MoveBlock):
                self._move(session, row, version, change_id, op.position)
            else:
                self._delete(session, row, version, change_id)
        else:
            raise InputError(f"{op!r} is not an edit operation")

    def _revert(self, session: Session, doc_id: str, version: int, change_id: int,
                revision: RevisionRow) -> None:
        """Undo one revision of an edit on the current document."""
        self._redo_or_revert(session, doc_id, version, change_id, revision, forward=False)

    def _replay(self, session: Session, doc_id: str, version: int, change_id: int,
                revision: RevisionRow) -> None:
        """Make one revision of an undone edit again on the current document."""
        self._redo_or_revert(session, doc_id, version, change_id, revision, forward=True)

    def _redo_or_revert(self, session: Session, doc_id: str, version: int, change_id: int,
                        revision: RevisionRow, forward: bool) -> None:
        """Bring the revision's block (or document fields) to its content after the revision
        (forward) or before it: a create and a delete swap roles going back."""
        content = revision.new if forward else revision.old
        if revision.block_id is None:
            if content:
                self._update_meta(session, doc_id, version, change_id, dict(content))
            return
        row = session.get(BlockRow, revision.block_id)
        count = self._block_count(session, doc_id)
        recreate = revision.op == ("create" if forward else "delete")
        remove = revision.op == ("delete" if forward else "create")
        if recreate and content is not None:
            block = _block_from_content(revision.block_id, content)
            self._insert(session, doc_id, version, change_id, min(content["position"], count),
                         block, keep_id=True)
        elif row is None or content is None and not remove:
            return  # the block is gone since: nothing to change
        elif remove:
            self._delete(session, row, version, change_id)
        elif revision.op == "move":
            self._move(session, row, version, change_id, min(content["position"], count - 1))
        else:
            self._update(session, row, version, change_id,
                         _update_to(_block_from_content(row.id, content)))

    # -- helpers ---------------------------------------------------------------------------

    @staticmethod
    def _new_change(session: Session, doc_id: str, label: str, kind: str,
                    version: int) -> ChangeRow:
        change = ChangeRow(document_id=doc_id, label=label[:500], kind=kind,
                           version_before=version - 1, version_after=version, state="done",
                           created_at=utcnow())
        session.add(change)
        session.flush()
        return change

    @staticmethod
    def _change_revisions(session: Session, change_id: int) -> builtins.list[RevisionRow]:
        return list(session.scalars(select(RevisionRow).where(RevisionRow.change_id == change_id)
                                    .order_by(RevisionRow.id)))

    @staticmethod
    def _undo_target(session: Session, doc_id: str) -> ChangeRow | None:
        """The latest edit in effect (undone edits always form a suffix of the edits)."""
        return session.scalar(select(ChangeRow)
                              .where(ChangeRow.document_id == doc_id, ChangeRow.kind == "edit",
                                     ChangeRow.state == "done")
                              .order_by(ChangeRow.id.desc()).limit(1))

    @staticmethod
    def _redo_target(session: Session, doc_id: str) -> ChangeRow | None:
        """The most recently undone edit: the oldest of the undone suffix."""
        return session.scalar(select(ChangeRow)
                              .where(ChangeRow.document_id == doc_id, ChangeRow.kind == "edit",
                                     ChangeRow.state == "undone")
                              .order_by(ChangeRow.id).limit(1))

    @staticmethod
    def _require(session: Session, doc_id: str) -> DocumentRow:
        row = session.get(DocumentRow, doc_id)
        if row is None:
            raise _document_not_found(doc_id)
        return row

    def _document(self, session: Session, doc_id: str) -> Document:
        session.flush()
        row = self._require(session, doc_id)
        return to_document(row, self._blocks(session, doc_id))

    @staticmethod
    def _doc_block(session: Session, doc_id: str, block_id: int) -> BlockRow:
        row = session.get(BlockRow, block_id)
        if row is None or row.document_id != doc_id:
            raise _block_not_found(block_id)
        return row

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
                old: dict[str, Any] | None, new: dict[str, Any] | None,
                change_id: int | None = None) -> None:
        session.add(RevisionRow(document_id=doc_id, block_id=block_id, document_version=version,
                                op=op, old=old, new=new, created_at=utcnow(),
                                change_id=change_id))
        session.flush()


def _to_change(row: ChangeRow) -> Change:
    return Change(id=row.id, document_id=row.document_id, label=row.label, kind=row.kind,
                  version_before=row.version_before, version_after=row.version_after,
                  state=row.state, created_at=row.created_at.isoformat())


def _block_from_content(block_id: int, content: dict[str, Any]) -> Block:
    """The Block a revision's content dict describes (as storage.rows.block_content wrote it)."""
    origin = content.get("origin", "compose")
    if content["kind"] == "text":
        return TextBlock(text=content["text"], section=content["section"], id=block_id,
                         origin=origin, checks=content.get("checks"))
    return ImageBlock(caption=content["caption"], image_id=content["image_id"],
                      candidates=[ImageCandidate.from_dict(c) for c in content["candidates"]],
                      section=content["section"], id=block_id, origin=origin)


def _update_to(block: Block) -> UpdateBlock:
    """An UpdateBlock that sets every content field of an existing block to `block`'s."""
    if isinstance(block, TextBlock):
        return UpdateBlock(block.id or 0, text=block.text, section=block.section,
                           origin=block.origin, checks=block.checks)
    return UpdateBlock(block.id or 0, caption=block.caption, image_id=block.image_id or "",
                       candidates=block.candidates, section=block.section, origin=block.origin)


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
