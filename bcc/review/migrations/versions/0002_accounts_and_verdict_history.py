"""Reviewer accounts and their sign-in sessions; verdicts kept as versions (never overwritten) by
reviewer account, with the form's submission id; a case's review reasons as a list.

A database from before: each distinct reviewer name becomes an account without a password (an admin
sets one: ``python -m bcc.review user passwd NAME``); names that differ only in case or surrounding
spaces (``Alice``, ``alice ``) become one account, their verdicts on a case its versions in the order
recorded. A case's review reason (one string) becomes a list of that one string.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-05
"""
from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    op.create_table(
        "reviewers",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(40), nullable=False),
        sa.Column("name_key", sa.String(40), nullable=False, unique=True),
        sa.Column("password_hash", sa.String(256), nullable=True),
        sa.Column("created", sa.DateTime, nullable=False))
    op.create_table(
        "login_sessions",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("reviewer_id", sa.Integer, sa.ForeignKey("reviewers.id"), nullable=False),
        sa.Column("created", sa.DateTime, nullable=False),
        sa.Column("expires", sa.DateTime, nullable=False))
    op.create_index("ix_login_sessions_reviewer_id", "login_sessions", ["reviewer_id"])

    # cases: the reason list; the rule verdict's text ("n/a (no BCC pattern trained)") is longer than 10
    with op.batch_alter_table("cases") as batch:
        batch.add_column(sa.Column("review_reasons", sa.JSON, nullable=True))
        batch.alter_column("rule_verdict", type_=sa.Text, existing_type=sa.String(10), existing_nullable=False)
    cases = sa.table("cases", sa.column("id", sa.Integer), sa.column("review_reason", sa.Text),
                     sa.column("review_reasons", sa.JSON))
    for cid, reason in bind.execute(sa.select(cases.c.id, cases.c.review_reason)).all():
        bind.execute(cases.update().where(cases.c.id == cid).values(review_reasons=[reason] if reason else []))
    with op.batch_alter_table("cases") as batch:
        batch.alter_column("review_reasons", existing_type=sa.JSON, nullable=False)
        batch.drop_column("review_reason")

    # verdicts: rebuilt as versions by account
    op.create_table(
        "verdicts_v2",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("case_id", sa.Integer, sa.ForeignKey("cases.id"), nullable=False),
        sa.Column("reviewer_id", sa.Integer, sa.ForeignKey("reviewers.id"), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("bcc", sa.Boolean, nullable=False),
        sa.Column("patterns", sa.JSON, nullable=False),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("recorded", sa.DateTime, nullable=False),
        sa.Column("submission", sa.String(64), nullable=True, unique=True),
        sa.UniqueConstraint("case_id", "reviewer_id", "version", name="uq_verdicts_version"))
    def common() -> list:
        return [sa.column("case_id", sa.Integer), sa.column("bcc", sa.Boolean), sa.column("patterns", sa.JSON),
                sa.column("note", sa.Text), sa.column("recorded", sa.DateTime)]
    old = sa.table("verdicts", sa.column("reviewer", sa.String), *common())
    new = sa.table("verdicts_v2", sa.column("reviewer_id", sa.Integer), sa.column("version", sa.Integer), *common())
    reviewers = sa.table("reviewers", sa.column("id", sa.Integer), sa.column("name", sa.String),
                         sa.column("name_key", sa.String), sa.column("created", sa.DateTime))
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    ids: dict[str, int] = {}
    versions: dict[tuple[int, int], int] = {}
    rows = bind.execute(sa.select(old).order_by(old.c.recorded, old.c.reviewer)).mappings().all()
    for r in rows:
        name = str(r["reviewer"]).strip()
        key = name.casefold()
        if key not in ids:
            bind.execute(reviewers.insert().values(name=name, name_key=key, created=now))
            ids[key] = bind.execute(sa.select(reviewers.c.id).where(reviewers.c.name_key == key)).scalar_one()
        slot = (r["case_id"], ids[key])
        versions[slot] = versions.get(slot, 0) + 1
        bind.execute(new.insert().values(case_id=r["case_id"], reviewer_id=ids[key], version=versions[slot],
                                         bcc=r["bcc"], patterns=r["patterns"], note=r["note"], recorded=r["recorded"]))
    op.drop_index("ix_verdicts_case_id", table_name="verdicts")
    op.drop_table("verdicts")
    op.rename_table("verdicts_v2", "verdicts")
    op.create_index("ix_verdicts_case_id", "verdicts", ["case_id"])
    op.create_index("ix_verdicts_reviewer_id", "verdicts", ["reviewer_id"])


def downgrade() -> None:
    raise NotImplementedError("verdict versions and accounts cannot be folded back into one verdict per name "
                              "without losing data; restore the backup taken before the upgrade")
