"""The database tables, as SQLAlchemy 2 ORM classes.

The migrations in `storage/migrations/versions/` create exactly these tables (a test compares
them with Alembic's autogenerate), so a change here needs a new migration file as well.
Types are portable between SQLite and PostgreSQL: JSON, LargeBinary and a UTC timestamp type
that always hands back timezone-aware datetimes.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_N_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

DOCUMENT_STATUSES = ("composing", "done", "failed", "interrupted")
BLOCK_KINDS = ("text", "image")
REVISION_OPS = ("create", "update", "delete", "move")
CHANGE_KINDS = ("edit", "undo", "redo")
CHANGE_STATES = ("done", "undone", "discarded")


def utcnow() -> datetime:
    """The current time, timezone-aware, in UTC (the only timezone stored)."""
    return datetime.now(UTC)


def _in_list(column: str, values: tuple[str, ...]) -> str:
    quoted = ", ".join(f"'{value}'" for value in values)
    return f"{column} IN ({quoted})"


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always read back timezone-aware.

    SQLite keeps no timezone, and PostgreSQL returns values in the session's timezone;
    normalising both ways makes comparisons and `isoformat()` the same on every backend.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: pass a timezone-aware UTC datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base whose metadata names every constraint (Alembic needs stable names)."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class DocumentRow(Base):
    """One article; `version` is bumped on every change (optimistic concurrency)."""

    __tablename__ = "documents"
    __table_args__ = (CheckConstraint(_in_list("status", DOCUMENT_STATUSES), name="status"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    owner: Mapped[str | None] = mapped_column(String(255), index=True)
    share_token: Mapped[str | None] = mapped_column(String(64), index=True, unique=True)
    title: Mapped[str] = mapped_column(Text)
    instruction: Mapped[str] = mapped_column(Text)
    language: Mapped[str] = mapped_column(String(8))
    status: Mapped[str] = mapped_column(String(16))
    options: Mapped[dict[str, Any]] = mapped_column(JSON)
    outline: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    version: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ImageRow(Base):
    """An image file of the library, content-addressed by the sha256 of its bytes (a private
    copy by that of its owner and those bytes' hash: storage.images.copy_id)."""

    __tablename__ = "images"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    path: Mapped[str] = mapped_column(String(255))
    format: Mapped[str] = mapped_column(String(16))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    bytes: Mapped[int] = mapped_column(Integer)
    caption: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(Text)
    license: Mapped[str] = mapped_column(Text)
    attribution: Mapped[str] = mapped_column(Text)
    # indexed: the library is listed (and paged) oldest first, and its newest image tells
    # ImageStore whether its in-memory hash index is stale
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    # 64-bit perceptual hash as 16 hex digits; "" = flat image (no usable hash), NULL = not
    # computed yet (images stored before migration 0004; ImageStore.backfill_phashes fills it).
    phash: Mapped[str | None] = mapped_column(String(16), index=True)
    # Who wrote the caption: "user", "sidecar", "seed", "model:<captioner>", "web" or "".
    caption_source: Mapped[str] = mapped_column(String(64), default="", server_default="")
    # None: the shared library (CLI imports, default photos); else who uploaded it in the
    # browser, the only one (besides the shared library) whose compositions can use it.
    owner: Mapped[str | None] = mapped_column(String(200), index=True)


class BlockRow(Base):
    """A paragraph or an image slot of a document, ordered by `position` (0..n-1)."""

    __tablename__ = "blocks"
    __table_args__ = (
        CheckConstraint(_in_list("kind", BLOCK_KINDS), name="kind"),
        Index("ix_blocks_document_id_position", "document_id", "position"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    document_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("documents.id", ondelete="CASCADE")
    )
    position: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(8))
    section: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    caption: Mapped[str] = mapped_column(Text)
    image_id: Mapped[str | None] = mapped_column(
        String(64), ForeignKey("images.id", ondelete="SET NULL")
    )
    candidates: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    # What wrote the current content (composer.types.BLOCK_ORIGINS): "compose", "rewrite",
    # "manual", "upload", ...; the preference pairs and the feedback report read it.
    origin: Mapped[str] = mapped_column(String(16), default="compose", server_default="compose")
    # The checks a model paragraph passed (composer.types.TextBlock.checks); NULL otherwise.
    checks: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ImageEmbeddingRow(Base):
    """One image's vector for one embedding model, as little-endian float32 bytes.

    `kind` says what was embedded: "caption" (the caption text; stale when it changes) or
    "image" (the pixels). `created_at` is when the vector was written (NULL for rows written
    before migration 0004), so an index can pick up only what is new.
    """

    __tablename__ = "image_embeddings"

    image_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("images.id", ondelete="CASCADE"), primary_key=True
    )
    model: Mapped[str] = mapped_column(String(255), primary_key=True, index=True)
    dim: Mapped[int] = mapped_column(Integer)
    vector: Mapped[bytes] = mapped_column(LargeBinary)
    kind: Mapped[str] = mapped_column(String(16), default="caption", server_default="caption")
    created_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class LibraryVersionRow(Base):
    """One row (id 1) counting changes to the library's vectors: a cheap "did it change?"."""

    __tablename__ = "library_version"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class ImageTextRow(Base):
    """The text an image visibly shows (OCR): its words and the share of the area they cover."""

    __tablename__ = "image_text"

    image_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("images.id", ondelete="CASCADE"), primary_key=True
    )
    engine: Mapped[str] = mapped_column(String(64))
    words: Mapped[list[str]] = mapped_column(JSON)
    area: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class RevisionRow(Base):
    """The history of a document: one row per change, with the block's content before it.

    `block_id` has no foreign key so that the history of a deleted block survives.
    """

    __tablename__ = "revisions"
    __table_args__ = (CheckConstraint(_in_list("op", REVISION_OPS), name="op"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    document_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("documents.id", ondelete="CASCADE"), index=True
    )
    block_id: Mapped[int | None] = mapped_column(Integer)
    document_version: Mapped[int] = mapped_column(Integer)
    op: Mapped[str] = mapped_column(String(8))
    old: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    new: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # The accepted edit (undo unit) this row belongs to; NULL for composing and older rows.
    change_id: Mapped[int | None] = mapped_column(
        Integer, ForeignKey("changes.id", ondelete="SET NULL"), index=True
    )


class ChangeRow(Base):
    """One accepted edit of a document: the unit of undo / redo (composer.types.Change).

    The document went from `version_before` to `version_after`; its revisions rows carry
    this change's id. `state`: "done", "undone" (can be redone) or "discarded" (undone and
    then superseded by a new edit). `undone_at` orders the redo stack.
    """

    __tablename__ = "changes"
    __table_args__ = (CheckConstraint(_in_list("kind", CHANGE_KINDS), name="kind"),
                      CheckConstraint(_in_list("state", CHANGE_STATES), name="state"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    document_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("documents.id", ondelete="CASCADE"), index=True
    )
    label: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(String(8))
    version_before: Mapped[int] = mapped_column(Integer)
    version_after: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(12))
    undone_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class FeedbackRow(Base):
    """A like (+1) or dislike (-1) of a paragraph, or of a document (block_id 0).

    One row per (document, block, owner): rating again replaces the value. `kind` and
    `origin` are the paragraph's at the time (they survive the paragraph's deletion).
    """

    __tablename__ = "feedback"
    __table_args__ = (UniqueConstraint("document_id", "block_id", "owner",
                                       name="uq_feedback_target"),
                      CheckConstraint("value IN (-1, 1)", name="value"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    document_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("documents.id", ondelete="CASCADE"), index=True
    )
    block_id: Mapped[int] = mapped_column(Integer)
    owner: Mapped[str] = mapped_column(String(255))
    value: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16), default="")
    origin: Mapped[str] = mapped_column(String(16), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class PreferencePairRow(Base):
    """A stored preference pair (composer.types.PreferencePair), training data for DPO.

    No foreign key to documents: the pairs outlive the documents they came from.
    """

    __tablename__ = "preference_pairs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    document_id: Mapped[str | None] = mapped_column(String(32), index=True)
    block_id: Mapped[int | None] = mapped_column(Integer)
    owner: Mapped[str | None] = mapped_column(String(255))
    op: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(16))
    rejected_origin: Mapped[str] = mapped_column(String(16))
    language: Mapped[str] = mapped_column(String(8))
    prompt: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    rejected: Mapped[str] = mapped_column(Text)
    chosen: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
