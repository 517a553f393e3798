"""The review database as bcc wrote it before its schema had migrations: worklists, cases, and one
verdict per (case, reviewer name), overwritten when recorded again.

Revision ID: 0001
Revises:
Create Date: 2026-12-01
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "worklists",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("imported", sa.DateTime, nullable=False),
        sa.Column("model", sa.Text, nullable=False),
        sa.Column("thresholds", sa.JSON, nullable=False),
        sa.Column("guarantee", sa.JSON, nullable=True),
        sa.Column("not_trained", sa.JSON, nullable=False))
    op.create_table(
        "cases",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("worklist_id", sa.Integer, sa.ForeignKey("worklists.id"), nullable=False),
        sa.Column("rank", sa.Integer, nullable=False),
        sa.Column("image", sa.Text, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("p_bcc", sa.Float, nullable=False),
        sa.Column("scores", sa.JSON, nullable=False),
        sa.Column("diagnosis_verdict", sa.String(10), nullable=False),
        sa.Column("rule_verdict", sa.String(10), nullable=False),
        sa.Column("review_reason", sa.Text, nullable=False),
        sa.Column("jpeg", sa.LargeBinary, nullable=False),
        sa.Column("maps", sa.LargeBinary, nullable=True),
        sa.Column("view", sa.JSON, nullable=False))
    op.create_index("ix_cases_worklist_id", "cases", ["worklist_id"])
    op.create_index("ix_cases_sha256", "cases", ["sha256"])
    op.create_table(
        "verdicts",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("case_id", sa.Integer, sa.ForeignKey("cases.id"), nullable=False),
        sa.Column("reviewer", sa.String(64), nullable=False),
        sa.Column("bcc", sa.Boolean, nullable=False),
        sa.Column("patterns", sa.JSON, nullable=False),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("recorded", sa.DateTime, nullable=False),
        sa.UniqueConstraint("case_id", "reviewer"))
    op.create_index("ix_verdicts_case_id", "verdicts", ["case_id"])


def downgrade() -> None:
    for table in ("verdicts", "cases", "worklists"):
        op.drop_table(table)
