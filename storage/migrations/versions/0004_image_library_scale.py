"""Image library at scale: perceptual hashes, caption provenance, vector kind and time.

images.phash (nullable, indexed; filled in Python for older rows), images.caption_source,
images.owner (NULL: the shared library; else the person who uploaded it in the browser),
image_embeddings.kind ("caption" for existing rows) and image_embeddings.created_at (NULL for
existing rows), library_version (one row counting vector changes: a retriever's cheap check
before each search), plus an index on images.created_at (paging oldest first and the cheap "did
the library change" check stay fast at 100k images). Add-only: every existing row stays valid.

Revision ID: 0004
Revises: 0003
Create Date: written by hand
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the four columns and the phash and created_at indexes."""
    with op.batch_alter_table("images") as batch:
        batch.add_column(sa.Column("phash", sa.String(16), nullable=True))
        batch.add_column(sa.Column("caption_source", sa.String(64), nullable=False,
                                   server_default=""))
        batch.add_column(sa.Column("owner", sa.String(200), nullable=True))
        batch.create_index(op.f("ix_images_phash"), ["phash"], unique=False)
        batch.create_index(op.f("ix_images_owner"), ["owner"], unique=False)
        batch.create_index(op.f("ix_images_created_at"), ["created_at"], unique=False)
    version = op.create_table(
        "library_version",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_library_version")),
    )
    op.bulk_insert(version, [{"id": 1, "version": 0}])
    with op.batch_alter_table("image_embeddings") as batch:
        batch.add_column(sa.Column("kind", sa.String(16), nullable=False,
                                   server_default="caption"))
        batch.add_column(sa.Column("created_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    """Drop them again (hashes are recomputed, kinds and times forgotten)."""
    op.drop_table("library_version")
    with op.batch_alter_table("image_embeddings") as batch:
        batch.drop_column("created_at")
        batch.drop_column("kind")
    with op.batch_alter_table("images") as batch:
        batch.drop_index(op.f("ix_images_created_at"))
        batch.drop_index(op.f("ix_images_owner"))
        batch.drop_index(op.f("ix_images_phash"))
        batch.drop_column("caption_source")
        batch.drop_column("owner")
        batch.drop_column("phash")
