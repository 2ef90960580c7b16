"""Paragraph checks: blocks.checks, what a model paragraph passed before it was kept.

A JSON object ({"passed": [...], "failed": {...}, "how": ..., "drafts": n}, see
composer/checked.py) or NULL (text a person wrote, images, and every existing row).
Add-only: every existing row stays valid.

Revision ID: 0006
Revises: 0005
Create Date: written by hand
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add blocks.checks (nullable)."""
    with op.batch_alter_table("blocks") as batch:
        batch.add_column(sa.Column("checks", sa.JSON(), nullable=True))


def downgrade() -> None:
    """Drop blocks.checks (the recorded checks are lost; the text stays)."""
    with op.batch_alter_table("blocks") as batch:
        batch.drop_column("checks")
