"""The review loop's database: worklists imported from ``bcc.predict``, their cases, and each reviewer's
verdict per case. SQLAlchemy, so SQLite (the default: one file, nothing to run) and a server database
(``postgresql://…``, ``mysql://…`` — any URL SQLAlchemy takes, its driver installed) hold the same tables.

A case keeps what the page shows and nothing else: a JPEG re-encoded from pixels (no EXIF, GPS or text
metadata of the input), the scores, and the raw Grad-CAM maps (8 x h x w float32 as ``.npy`` bytes). Its
``sha256`` (of the input file's bytes) is how ``bcc.review export --dataset`` finds the case in a dataset.
A verdict is unique per (case, reviewer): recording again replaces one's own, never another's.
"""
from __future__ import annotations

import datetime as dt
import io
from pathlib import Path

import numpy as np
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
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship, sessionmaker

from bcc.core.errors import BadInput

DEFAULT_URL = "sqlite:///review.db"


class Base(DeclarativeBase):
    pass


class Worklist(Base):
    __tablename__ = "worklists"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    imported: Mapped[dt.datetime] = mapped_column(DateTime)
    model: Mapped[str] = mapped_column(Text)
    thresholds: Mapped[dict] = mapped_column(JSON)
    guarantee: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    not_trained: Mapped[list] = mapped_column(JSON)     # outputs the model never trained: no finding, no map
    cases: Mapped[list[Case]] = relationship(back_populates="worklist", order_by="Case.rank")


class Case(Base):
    __tablename__ = "cases"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    worklist_id: Mapped[int] = mapped_column(ForeignKey("worklists.id"), index=True)
    rank: Mapped[int] = mapped_column(Integer)
    image: Mapped[str] = mapped_column(Text)            # the input's name in triage.csv
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    p_bcc: Mapped[float] = mapped_column(Float)
    scores: Mapped[dict] = mapped_column(JSON)          # OUTPUTS name → probability
    diagnosis_verdict: Mapped[str] = mapped_column(String(10))
    rule_verdict: Mapped[str] = mapped_column(String(10))
    review_reason: Mapped[str] = mapped_column(Text, default="")
    jpeg: Mapped[bytes] = mapped_column(LargeBinary)
    maps: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)  # .npy bytes, (8, h, w) float32
    view: Mapped[list] = mapped_column(JSON)            # the part of the picture the network saw (fractions)
    worklist: Mapped[Worklist] = relationship(back_populates="cases")
    verdicts: Mapped[list[Verdict]] = relationship(back_populates="case")

    def cams(self) -> np.ndarray | None:
        return None if self.maps is None else np.load(io.BytesIO(self.maps), allow_pickle=False)


class Verdict(Base):
    __tablename__ = "verdicts"
    __table_args__ = (UniqueConstraint("case_id", "reviewer"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    reviewer: Mapped[str] = mapped_column(String(64))
    bcc: Mapped[bool] = mapped_column(Boolean)
    patterns: Mapped[dict] = mapped_column(JSON)        # code → 0/1, every code
    note: Mapped[str] = mapped_column(Text, default="")
    recorded: Mapped[dt.datetime] = mapped_column(DateTime)
    case: Mapped[Case] = relationship(back_populates="verdicts")


def npy_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.asarray(a, dtype=np.float32), allow_pickle=False)
    return buf.getvalue()


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    """WAL lets a reader and a writer work at once (two reviewers); a writer waits up to 10 s for another."""
    cur = dbapi_connection.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def open_db(url: str = DEFAULT_URL, create: bool = True) -> sessionmaker[Session]:
    """Sessions on the database at `url`, its tables created when missing; without `create` a SQLite file
    that is not there is an error (exporting from it would only find nothing)."""
    try:
        engine: Engine = create_engine(url)
    except (ArgumentError, NoSuchModuleError, ImportError) as e:
        raise BadInput(f"--db {url}: not a database URL SQLAlchemy can open ({e}); e.g. sqlite:///review.db "
                       f"or postgresql://user@localhost/bcc") from None
    path = engine.url.database if engine.dialect.name == "sqlite" else None
    if not create and path and path != ":memory:" and not Path(path).is_file():
        raise BadInput(f"--db {url}: no such database file; `python -m bcc.review import` creates it")
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    try:
        Base.metadata.create_all(engine)
    except OperationalError as e:
        raise BadInput(f"--db {url}: cannot open the database ({e.orig}); check the path or server") from None
    return sessionmaker(engine, expire_on_commit=False)
