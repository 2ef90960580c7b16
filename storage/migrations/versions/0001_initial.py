"""The first tables: documents, blocks, images, image_embeddings, revisions.

Revision ID: 0001
Revises:
Create Date: written by hand

Migrations are ordered and add-only: a later change is a new file (0002_..., 0003_...) that
revises the previous one; a released file is never edited.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _timestamp(name: str) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False)


def upgrade() -> None:
    """Create the five tables with their keys, indexes and checks."""
    op.create_table(
        "documents",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("slug", sa.String(64), nullable=False),
        sa.Column("owner", sa.String(255), nullable=True),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("instruction", sa.Text(), nullable=False),
        sa.Column("language", sa.String(8), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.Column("outline", sa.JSON(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_documents")),
        sa.UniqueConstraint("slug", name=op.f("uq_documents_slug")),
        sa.CheckConstraint(
            "status IN ('composing', 'done', 'failed', 'interrupted')",
            name=op.f("ck_documents_status"),
        ),
    )
    op.create_index(op.f("ix_documents_owner"), "documents", ["owner"])

    op.create_table(
        "images",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("path", sa.String(255), nullable=False),
        sa.Column("format", sa.String(16), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("bytes", sa.Integer(), nullable=False),
        sa.Column("caption", sa.Text(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("license", sa.Text(), nullable=False),
        sa.Column("attribution", sa.Text(), nullable=False),
        _timestamp("created_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_images")),
    )

    op.create_table(
        "blocks",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("document_id", sa.String(32), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("section", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("caption", sa.Text(), nullable=False),
        sa.Column("image_id", sa.String(64), nullable=True),
        sa.Column("candidates", sa.JSON(), nullable=False),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_blocks")),
        sa.ForeignKeyConstraint(
            ["document_id"], ["documents.id"], ondelete="CASCADE",
            name=op.f("fk_blocks_document_id_documents"),
        ),
        sa.ForeignKeyConstraint(
            ["image_id"], ["images.id"], ondelete="SET NULL",
            name=op.f("fk_blocks_image_id_images"),
        ),
        sa.CheckConstraint("kind IN ('text', 'image')", name=op.f("ck_blocks_kind")),
    )
    op.create_index("ix_blocks_document_id_position", "blocks", ["document_id", "position"])

    op.create_table(
        "image_embeddings",
        sa.Column("image_id", sa.String(64), nullable=False),
        sa.Column("model", sa.String(255), nullable=False),
        sa.Column("dim", sa.Integer(), nullable=False),
        sa.Column("vector", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("image_id", "model", name=op.f("pk_image_embeddings")),
        sa.ForeignKeyConstraint(
            ["image_id"], ["images.id"], ondelete="CASCADE",
            name=op.f("fk_image_embeddings_image_id_images"),
        ),
    )
    op.create_index(op.f("ix_image_embeddings_model"), "image_embeddings", ["model"])

    op.create_table(
        "revisions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("document_id", sa.String(32), nullable=False),
        sa.Column("block_id", sa.Integer(), nullable=True),
        sa.Column("document_version", sa.Integer(), nullable=False),
        sa.Column("op", sa.String(8), nullable=False),
        sa.Column("old", sa.JSON(), nullable=True),
        sa.Column("new", sa.JSON(), nullable=True),
        _timestamp("created_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_revisions")),
        sa.ForeignKeyConstraint(
            ["document_id"], ["documents.id"], ondelete="CASCADE",
            name=op.f("fk_revisions_document_id_documents"),
        ),
        sa.CheckConstraint(
            "op IN ('create', 'update', 'delete', 'move')", name=op.f("ck_revisions_op")
        ),
    )
    op.create_index(op.f("ix_revisions_document_id"), "revisions", ["document_id"])


def downgrade() -> None:
    """Drop the tables (children first); this loses every document and image record."""
    op.drop_table("revisions")
    op.drop_table("image_embeddings")
    op.drop_table("blocks")
    op.drop_table("images")
    op.drop_table("documents")
