"""Visible text of library images (OCR): image_text.

Revision ID: 0003
Revises: 0002
Create Date: written by hand
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """One row per OCR'd image: engine, words, covered area."""
    op.create_table(
        "image_text",
        sa.Column("image_id", sa.String(64), nullable=False),
        sa.Column("engine", sa.String(64), nullable=False),
        sa.Column("words", sa.JSON(), nullable=False),
        sa.Column("area", sa.Float(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("image_id", name=op.f("pk_image_text")),
        sa.ForeignKeyConstraint(
            ["image_id"], ["images.id"], ondelete="CASCADE",
            name=op.f("fk_image_text_image_id_images"),
        ),
    )


def downgrade() -> None:
    """Drop the OCR results (they can be computed again)."""
    op.drop_table("image_text")
