"""Public read-only share links: a random token per share, revocable at any time.

A document is shared while documents.share_token holds a token; revoking clears it, so the
old link stops working at once, and sharing again makes a new, different token.
"""

from __future__ import annotations

import secrets

from sqlalchemy import select, update

from composer.types import Document, NotFoundError
from storage.db import Database
from storage.rows import to_document
from storage.tables import BlockRow, DocumentRow, RevisionRow, utcnow

TOKEN_BYTES = 24  # 192 bits, 32 URL-safe characters


def new_share_token() -> str:
    """An unguessable token for a share link."""
    return secrets.token_urlsafe(TOKEN_BYTES)


class ShareRepository:
    """Creates, revokes and resolves share tokens."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def share(self, doc_id: str) -> str:
        """The document's share token, created if it has none (sharing twice keeps the link)."""
        with self.db.session() as session:
            row = self._row(session, doc_id)
            if row.share_token:
                return row.share_token
            token = new_share_token()
            self._set(session, row, token)
            return token

    def revoke(self, doc_id: str) -> None:
        """Stop sharing: the link answers 404 from now on."""
        with self.db.session() as session:
            row = self._row(session, doc_id)
            if row.share_token:
                self._set(session, row, None)

    def get_shared(self, token: str) -> Document:
        """The document shared under `token`; NotFoundError for unknown or revoked tokens."""
        if not token or len(token) > 64:
            raise NotFoundError("no shared document under this link")
        with self.db.session() as session:
            row = session.scalar(select(DocumentRow).where(DocumentRow.share_token == token))
            if row is None:
                raise NotFoundError("no shared document under this link: it may have been revoked")
            blocks = list(session.scalars(select(BlockRow).where(BlockRow.document_id == row.id)
                                          .order_by(BlockRow.position)))
            return to_document(row, blocks)

    def shared_version(self, token: str) -> int | None:
        """The version of the document shared under `token` (one indexed query), None if no
        document is shared under it: lets a page cache check it is still current."""
        if not token or len(token) > 64:
            return None
        with self.db.session() as session:
            return session.scalar(select(DocumentRow.version)
                                  .where(DocumentRow.share_token == token))

    @staticmethod
    def _row(session, doc_id: str) -> DocumentRow:
        row = session.get(DocumentRow, doc_id)
        if row is None:
            raise NotFoundError(f"no document with id {doc_id!r}: list the documents to find it")
        return row

    @staticmethod
    def _set(session, row: DocumentRow, token: str | None) -> None:
        old = {"shared": row.share_token is not None}
        session.execute(update(DocumentRow).where(DocumentRow.id == row.id)
                        .values(share_token=token, version=DocumentRow.version + 1,
                                updated_at=utcnow())
                        .execution_options(synchronize_session=False))
        session.refresh(row)
        session.add(RevisionRow(document_id=row.id, block_id=None, document_version=row.version,
                                op="update", old=old, new={"shared": token is not None},
                                created_at=utcnow()))
