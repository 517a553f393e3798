"""The review database: its tables, and opening, creating and upgrading it.

Any SQLAlchemy URL works: a SQLite file by default (created readable by its owner only, mode 0600: it
holds patient pictures, scores and every reviewer's notes), or a server such as PostgreSQL
(``postgresql://user@host/db``, through psycopg). The schema is the head of the Alembic migrations in
``bcc/review/migrations``: ``create_database`` (``python -m bcc.review init``) builds it from them,
``upgrade_database`` (``python -m bcc.review upgrade``) brings an older database to it — one written
before the migrations existed included —, and ``open_db`` refuses a database that is missing, not a
review database, or at another revision, so a mistyped ``--db`` never starts on an empty one.

Verdicts are never overwritten: recording again adds a version (``Verdict.version`` 1, 2, …), and the
export says which it took. A form's ``submission`` id is recorded once, so a form sent twice (a double
click, a retry after a dropped connection) is one verdict.
"""
from __future__ import annotations

import datetime as dt
import io
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    inspect,
    text,
)
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship, sessionmaker

from bcc.core.errors import BadInput

DEFAULT_URL = "sqlite:///review.db"
MIGRATIONS = Path(__file__).with_name("migrations")
BEFORE_MIGRATIONS = "0001"  # the schema of the databases written before the migrations existed


def now() -> dt.datetime:
    """UTC, without a zone (what every DateTime column holds)."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class Worklist(Base):
    __tablename__ = "worklists"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    imported: Mapped[dt.datetime] = mapped_column(DateTime)
    model: Mapped[str] = mapped_column(Text)
    thresholds: Mapped[dict] = mapped_column(JSON)      # Thresholds.as_dict(), every value (checked on import)
    guarantee: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    not_trained: Mapped[list] = mapped_column(JSON)     # outputs the model never trained: no finding, no map
    cases: Mapped[list[Case]] = relationship(back_populates="worklist", order_by="Case.rank")


class Case(Base):
    __tablename__ = "cases"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    worklist_id: Mapped[int] = mapped_column(ForeignKey("worklists.id"), index=True)
    rank: Mapped[int] = mapped_column(Integer)
    image: Mapped[str] = mapped_column(Text)            # the input's name, as bcc.predict recorded it
    sha256: Mapped[str] = mapped_column(String(64), index=True)  # the picture's content when it was scored
    p_bcc: Mapped[float] = mapped_column(Float)
    scores: Mapped[dict] = mapped_column(JSON)          # OUTPUTS name → probability (None: not trained)
    diagnosis_verdict: Mapped[str] = mapped_column(String(10))
    rule_verdict: Mapped[str] = mapped_column(Text)
    review_reasons: Mapped[list] = mapped_column(JSON)  # why triage flagged it, one string per reason
    jpeg: Mapped[bytes] = mapped_column(LargeBinary)
    maps: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)  # .npy bytes, (8, h, w) float32
    view: Mapped[list] = mapped_column(JSON)            # the part of the picture the network saw (fractions)
    worklist: Mapped[Worklist] = relationship(back_populates="cases")
    verdicts: Mapped[list[Verdict]] = relationship(back_populates="case")

    def cams(self) -> np.ndarray | None:
        return None if self.maps is None else np.load(io.BytesIO(self.maps), allow_pickle=False)


class Reviewer(Base):
    """A reviewer account (``python -m bcc.review user add``): the name is their rater name in the export."""

    __tablename__ = "reviewers"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(40))
    name_key: Mapped[str] = mapped_column(String(40), unique=True)   # casefolded: Alice = alice = ALICE
    password_hash: Mapped[str | None] = mapped_column(String(256), nullable=True)  # None: cannot sign in yet
    created: Mapped[dt.datetime] = mapped_column(DateTime)


class LoginSession(Base):
    """A signed-in browser. The cookie holds a random token; the table only its SHA-256, so the database
    cannot be used to sign in. Sign-out deletes the row, a password change all of the reviewer's rows:
    a copied cookie then signs in nobody."""

    __tablename__ = "login_sessions"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    reviewer_id: Mapped[int] = mapped_column(ForeignKey("reviewers.id"), index=True)
    created: Mapped[dt.datetime] = mapped_column(DateTime)
    expires: Mapped[dt.datetime] = mapped_column(DateTime)
    reviewer: Mapped[Reviewer] = relationship()


class Verdict(Base):
    """One version of a reviewer's verdict on a case; the highest version is the current one."""

    __tablename__ = "verdicts"
    __table_args__ = (UniqueConstraint("case_id", "reviewer_id", "version", name="uq_verdicts_version"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    reviewer_id: Mapped[int] = mapped_column(ForeignKey("reviewers.id"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    bcc: Mapped[bool] = mapped_column(Boolean)
    patterns: Mapped[dict] = mapped_column(JSON)        # code → 0/1, every code
    note: Mapped[str] = mapped_column(Text, default="")
    recorded: Mapped[dt.datetime] = mapped_column(DateTime)
    submission: Mapped[str | None] = mapped_column(String(64), unique=True, nullable=True)  # the form's id
    case: Mapped[Case] = relationship(back_populates="verdicts")
    reviewer: Mapped[Reviewer] = relationship()


def npy_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.asarray(a, dtype=np.float32), allow_pickle=False)
    return buf.getvalue()


def _sqlite_pragmas(foreign_keys: bool):
    """WAL lets a reader and a writer work at once (two reviewers); a writer waits up to 10 s for another.
    Migrations run without foreign-key checks: SQLite changes a table by copying and renaming it."""
    def pragmas(dbapi_connection, _record) -> None:
        cur = dbapi_connection.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA busy_timeout=10000")
        cur.execute(f"PRAGMA foreign_keys={'ON' if foreign_keys else 'OFF'}")
        cur.close()
    return pragmas


def _url(url: str) -> URL:
    try:
        u = make_url(url)
    except ArgumentError as e:
        raise BadInput(f"--db {url}: not a database URL SQLAlchemy can open ({e}); e.g. sqlite:///review.db "
                       f"or postgresql://user@localhost/bcc") from None
    return u.set(drivername="postgresql+psycopg") if u.drivername == "postgresql" else u


def _engine(url: str, migrating: bool = False) -> Engine:
    try:
        engine = create_engine(_url(url))
    except (ArgumentError, NoSuchModuleError, ImportError) as e:
        raise BadInput(f"--db {url}: not a database URL SQLAlchemy can open ({e}); e.g. sqlite:///review.db "
                       f"or postgresql://user@localhost/bcc") from None
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas(foreign_keys=not migrating))
    return engine


def sqlite_file(engine: Engine) -> Path | None:
    """The database's file, for a SQLite database on disk."""
    db = engine.url.database if engine.dialect.name == "sqlite" else None
    return Path(db) if db and db != ":memory:" and not db.startswith("file:") else None


def _alembic(connection) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


HEAD: str = ScriptDirectory(str(MIGRATIONS)).get_current_head() or BEFORE_MIGRATIONS


def _state(engine: Engine, url: str) -> tuple[str | None, set[str]]:
    """(the database's Alembic revision, its tables); BadInput when it cannot be reached. Read without
    Alembic's migration context, which logs: opening a database says nothing."""
    try:
        with engine.connect() as conn:
            tables = set(inspect(conn).get_table_names())
            revision = conn.execute(text("SELECT version_num FROM alembic_version")).scalar() \
                if "alembic_version" in tables else None
            return revision, tables
    except OperationalError as e:
        raise BadInput(f"--db {url}: cannot open the database ({e.orig}); check the path or server") from None


def _missing(url: str) -> BadInput:
    return BadInput(f"--db {url}: no review database there (a mistyped path?); `python -m bcc.review init --db "
                    f"{url}` creates a new one")


@contextmanager
def database(url: str) -> Iterator[sessionmaker[Session]]:
    """:func:`open_db` for one command: its connections are closed when the block ends (SQLite then
    removes its -wal and -shm files)."""
    sessions = open_db(url)
    try:
        yield sessions
    finally:
        sessions.kw["bind"].dispose()


def open_db(url: str = DEFAULT_URL) -> sessionmaker[Session]:
    """Sessions on the review database at `url`, which must exist at this version's schema."""
    engine = _engine(url)
    try:
        return _check(engine, url)
    except BadInput:
        engine.dispose()
        raise


def _check(engine: Engine, url: str) -> sessionmaker[Session]:
    path = sqlite_file(engine)
    if path is not None and not path.is_file():
        raise _missing(url)
    revision, tables = _state(engine, url)
    if revision is None and "worklists" not in tables:
        raise _missing(url)
    if revision != HEAD:
        known = revision is None or ScriptDirectory(str(MIGRATIONS)).get_revision(revision) is not None
        if not known:
            raise BadInput(f"--db {url}: its schema (revision {revision}) is newer than this bcc's ({HEAD}); "
                           f"update bcc")
        raise BadInput(f"--db {url}: its schema is older (revision {revision or 'from before migrations'}) than this "
                       f"bcc's ({HEAD}); back it up, then `python -m bcc.review upgrade --db {url}`")
    return sessionmaker(engine, expire_on_commit=False)


def create_database(url: str) -> sessionmaker[Session]:
    """A new, empty review database at `url` (a SQLite file made with mode 0600); one already there is refused."""
    engine = _engine(url, migrating=True)
    path = sqlite_file(engine)
    if path is not None:
        if path.exists():
            raise BadInput(f"--db {url}: {path} exists; `init` only creates a new database (an older one: "
                           f"`python -m bcc.review upgrade`)")
        if not path.parent.is_dir():
            raise BadInput(f"--db {url}: no folder {path.parent}; create it first or fix the path")
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))  # owner only, before SQLite opens it
    revision, tables = _state(engine, url)
    if revision is not None or tables:
        engine.dispose()
        raise BadInput(f"--db {url}: that database already holds tables ({', '.join(sorted(tables)[:4])}); `init` "
                       f"only creates a new one (an older review database: `python -m bcc.review upgrade`)")
    try:
        with engine.begin() as conn:
            command.upgrade(_alembic(conn), "head")
    except BaseException:
        if path is not None:
            for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
                p.unlink(missing_ok=True)
        raise
    engine.dispose()
    return open_db(url)


def upgrade_database(url: str) -> tuple[str | None, str]:
    """Bring the review database at `url` to this version's schema (one from before the migrations is first
    stamped as their first revision); a SQLite file is made owner-only. Returns (from, to) revisions."""
    engine = _engine(url, migrating=True)
    path = sqlite_file(engine)
    if path is not None and not path.is_file():
        raise _missing(url)
    revision, tables = _state(engine, url)
    if revision is None and "worklists" not in tables:
        engine.dispose()
        raise _missing(url)
    with engine.begin() as conn:
        cfg = _alembic(conn)
        if revision is None:
            command.stamp(cfg, BEFORE_MIGRATIONS)
        command.upgrade(cfg, "head")
    engine.dispose()
    if path is not None:
        for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            if p.exists():
                p.chmod(0o600)
    return revision, HEAD
