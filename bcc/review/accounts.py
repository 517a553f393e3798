"""Reviewer accounts and sign-in sessions.

An admin adds each reviewer (``python -m bcc.review user add NAME``); the name, stripped, is their rater
name in the export and is unique whatever its case (``Alice``, ``alice`` and ``ALICE `` are one account).
Passwords are kept as Werkzeug hashes (scrypt). A sign-in opens a server-side session: the browser's
cookie holds a random token, the database its SHA-256 and an expiry; sign-out deletes it and a password
change deletes all of the reviewer's, so a cookie copied before either signs in nobody afterwards.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
from dataclasses import dataclass

from flask_login import UserMixin
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.security import check_password_hash, generate_password_hash

from bcc.core.errors import BadInput
from bcc.review.db import LoginSession, Reviewer, now

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._-]{0,39}")  # becomes a rater name in annotations.csv
NAME_RULE = "1–40 letters, digits, spaces, '.', '_' or '-', starting with a letter or digit"
MIN_PASSWORD = 10
SESSION_HOURS = 12  # a working day: then the reviewer signs in again
_UNKNOWN = generate_password_hash(secrets.token_urlsafe(16))  # checked for an unknown name: the same time


@dataclass
class SignedIn(UserMixin):
    """The reviewer behind a request (Flask-Login's user): its id for Flask-Login is the session token."""

    reviewer_id: int
    name: str
    token: str

    def get_id(self) -> str:
        return self.token


def reviewer_name(raw: str) -> str:
    """`raw` stripped, if it is a valid rater name (BadInput otherwise)."""
    name = raw.strip()
    if not NAME.fullmatch(name):
        raise BadInput(f"reviewer name {raw!r}: expected {NAME_RULE}")
    return name


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise BadInput(f"the password is {len(password)} characters; use at least {MIN_PASSWORD}")
    return password


def _find(s: Session, name: str) -> Reviewer | None:
    return s.scalar(select(Reviewer).where(Reviewer.name_key == name.strip().casefold()))


def check_free(sessions: sessionmaker[Session], name: str) -> str:
    """`name` as a new account would hold it (stripped), if it is a valid rater name no account holds in
    any case; BadInput otherwise."""
    name = reviewer_name(name)
    with sessions() as s:
        taken = _find(s, name)
    if taken is not None:
        raise BadInput(f"reviewer {name!r}: the name is taken (as {taken.name!r}; names are the same whatever "
                       f"their case); choose another, or `user passwd {taken.name}` to set its password")
    return name


def add_reviewer(sessions: sessionmaker[Session], name: str, password: str) -> Reviewer:
    """A new account; a name taken whatever its case is refused."""
    name, password = check_free(sessions, name), check_password(password)
    with sessions() as s:
        r = Reviewer(name=name, name_key=name.casefold(), password_hash=generate_password_hash(password), created=now())
        s.add(r)
        try:
            s.commit()
        except IntegrityError:
            raise BadInput(f"reviewer {name!r}: the name was just taken; choose another") from None
        return r


def find(sessions: sessionmaker[Session], name: str) -> Reviewer:
    """The account `name` (whatever its case); BadInput when there is none."""
    with sessions() as s:
        r = _find(s, name)
    if r is None:
        raise BadInput(f"reviewer {name.strip()!r}: no such account; `user add` creates it (`user list` shows them)")
    return r


def set_password(sessions: sessionmaker[Session], name: str, password: str) -> None:
    """Set `name`'s password and sign out every browser signed in as them."""
    check_password(password)
    rid = find(sessions, name).id
    with sessions() as s:
        r = s.get_one(Reviewer, rid)
        r.password_hash = generate_password_hash(password)
        s.execute(delete(LoginSession).where(LoginSession.reviewer_id == r.id))
        s.commit()


def list_reviewers(sessions: sessionmaker[Session]) -> list[tuple[str, bool]]:
    """(name, can sign in) of every account."""
    with sessions() as s:
        return [(r.name, r.password_hash is not None) for r in s.scalars(select(Reviewer).order_by(Reviewer.name_key))]


def authenticate(sessions: sessionmaker[Session], name: str, password: str) -> Reviewer | None:
    """The account if `password` is its password; None otherwise (an unknown name takes as long)."""
    with sessions() as s:
        r = _find(s, name)
    if r is None or r.password_hash is None:
        check_password_hash(_UNKNOWN, password)
        return None
    return r if check_password_hash(r.password_hash, password) else None


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def open_session(sessions: sessionmaker[Session], r: Reviewer) -> SignedIn:
    token = secrets.token_urlsafe(32)
    with sessions() as s:
        s.add(LoginSession(id=_digest(token), reviewer_id=r.id, created=now(),
                           expires=now() + dt.timedelta(hours=SESSION_HOURS)))
        s.commit()
    return SignedIn(r.id, r.name, token)


def resolve(sessions: sessionmaker[Session], token: str) -> SignedIn | None:
    """The reviewer signed in by `token`, if that session is open and not expired."""
    with sessions() as s:
        ls = s.get(LoginSession, _digest(token))
        if ls is None or ls.expires <= now():
            return None
        return SignedIn(ls.reviewer_id, ls.reviewer.name, token)


def close_session(sessions: sessionmaker[Session], token: str) -> None:
    with sessions() as s:
        s.execute(delete(LoginSession).where(LoginSession.id == _digest(token)))
        s.execute(delete(LoginSession).where(LoginSession.expires <= now()))  # and any expired ones
        s.commit()
