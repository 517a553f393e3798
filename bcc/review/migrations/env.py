"""Alembic's entry point for the review database's migrations. ``bcc.review.db`` runs them on the connection
it passes in ``config.attributes["connection"]``; a maintainer writing a new revision uses the alembic
command line with an ini file naming ``script_location = bcc/review/migrations`` and ``sqlalchemy.url``
(docs/deploy.md, "The review database")."""
from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from bcc.review.db import Base


def _run(conn) -> None:
    # render_as_batch: SQLite changes a table by copying it (ALTER TABLE can do little there)
    context.configure(connection=conn, target_metadata=Base.metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def main() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
    else:  # the alembic command line, with sqlalchemy.url in its ini file
        with create_engine(context.config.get_main_option("sqlalchemy.url") or "").connect() as conn:
            _run(conn)


if hasattr(context, "config"):  # alembic is running this file; imported on its own it does nothing
    main()
