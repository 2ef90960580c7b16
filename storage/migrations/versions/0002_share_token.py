"""Share links: documents.share_token (NULL = not shared; a new token per share).

Revision ID: 0002
Revises: 0001
Create Date: written by hand
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the nullable, unique share token."""
    with op.batch_alter_table("documents") as batch:
        batch.add_column(sa.Column("share_token", sa.String(64), nullable=True))
        batch.create_index(op.f("ix_documents_share_token"), ["share_token"], unique=True)


def downgrade() -> None:
    """Drop the share token (every share link stops working)."""
    with op.batch_alter_table("documents") as batch:
        batch.drop_index(op.f("ix_documents_share_token"))
        batch.drop_column("share_token")
