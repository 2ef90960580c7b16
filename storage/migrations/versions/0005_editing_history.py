"""Editing history, feedback and preference pairs.

blocks.origin (what wrote a block's content; "compose" for existing rows), changes (one row
per accepted edit: the unit of undo / redo), revisions.change_id (NULL for existing rows),
feedback (likes and dislikes of paragraphs and documents) and preference_pairs (DPO training
data captured from people's rewrites). Add-only: every existing row stays valid.

Revision ID: 0005
Revises: 0004
Create Date: written by hand
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create changes, feedback and preference_pairs; add blocks.origin, revisions.change_id."""
    op.create_table(
        "changes",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("document_id", sa.String(32), nullable=False),
        sa.Column("label", sa.Text(), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("version_before", sa.Integer(), nullable=False),
        sa.Column("version_after", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(12), nullable=False),
        sa.Column("undone_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("kind IN ('edit', 'undo', 'redo')", name=op.f("ck_changes_kind")),
        sa.CheckConstraint("state IN ('done', 'undone', 'discarded')",
                           name=op.f("ck_changes_state")),
        sa.ForeignKeyConstraint(["document_id"], ["documents.id"], ondelete="CASCADE",
                                name=op.f("fk_changes_document_id_documents")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_changes")),
    )
    op.create_index(op.f("ix_changes_document_id"), "changes", ["document_id"], unique=False)
    op.create_table(
        "feedback",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("document_id", sa.String(32), nullable=False),
        sa.Column("block_id", sa.Integer(), nullable=False),
        sa.Column("owner", sa.String(255), nullable=False),
        sa.Column("value", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("origin", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("value IN (-1, 1)", name=op.f("ck_feedback_value")),
        sa.ForeignKeyConstraint(["document_id"], ["documents.id"], ondelete="CASCADE",
                                name=op.f("fk_feedback_document_id_documents")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_feedback")),
        sa.UniqueConstraint("document_id", "block_id", "owner", name="uq_feedback_target"),
    )
    op.create_index(op.f("ix_feedback_document_id"), "feedback", ["document_id"], unique=False)
    op.create_table(
        "preference_pairs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("document_id", sa.String(32), nullable=True),
        sa.Column("block_id", sa.Integer(), nullable=True),
        sa.Column("owner", sa.String(255), nullable=True),
        sa.Column("op", sa.String(16), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("rejected_origin", sa.String(16), nullable=False),
        sa.Column("language", sa.String(8), nullable=False),
        sa.Column("prompt", sa.JSON(), nullable=False),
        sa.Column("rejected", sa.Text(), nullable=False),
        sa.Column("chosen", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_preference_pairs")),
    )
    op.create_index(op.f("ix_preference_pairs_document_id"), "preference_pairs",
                    ["document_id"], unique=False)
    op.create_index(op.f("ix_preference_pairs_created_at"), "preference_pairs",
                    ["created_at"], unique=False)
    with op.batch_alter_table("blocks") as batch:
        batch.add_column(sa.Column("origin", sa.String(16), nullable=False,
                                   server_default="compose"))
    with op.batch_alter_table("revisions") as batch:
        batch.add_column(sa.Column("change_id", sa.Integer(), nullable=True))
        batch.create_index(op.f("ix_revisions_change_id"), ["change_id"], unique=False)
        batch.create_foreign_key(op.f("fk_revisions_change_id_changes"), "changes",
                                 ["change_id"], ["id"], ondelete="SET NULL")


def downgrade() -> None:
    """Drop them again (history groups, feedback and pairs are lost)."""
    with op.batch_alter_table("revisions") as batch:
        batch.drop_constraint(op.f("fk_revisions_change_id_changes"), type_="foreignkey")
        batch.drop_index(op.f("ix_revisions_change_id"))
        batch.drop_column("change_id")
    with op.batch_alter_table("blocks") as batch:
        batch.drop_column("origin")
    op.drop_table("preference_pairs")
    op.drop_table("feedback")
    op.drop_table("changes")
