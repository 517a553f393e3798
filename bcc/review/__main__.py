"""``python -m bcc.review``: the review loop (docs/deploy.md).

    python -m bcc.review init [--db sqlite:///review.db]            # a new database (file mode 0600)
    python -m bcc.review upgrade [--db URL]                         # an older database to this schema
    python -m bcc.review user add NAME [--password-stdin] [--db URL]  # also: user passwd NAME, user list
    python -m bcc.review import triage/2026-12-04 [--name NAME] [--db URL]
    python -m bcc.review serve [--port 8765] [--db URL]             # http://localhost:8765, this machine only
    python -m bcc.review export --out annotations.new.csv [--dataset DATASET_DIR] [--db URL]

A dataset-style tool (argparse, positional paths). ``--db`` is any SQLAlchemy URL (SQLite by default; a
server database such as ``postgresql://user@host/db`` by its URL); every command but ``init`` needs the
database to exist at this version's schema, so a mistyped path is refused instead of starting afresh.
"""
from __future__ import annotations

import getpass
import sys
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker
from waitress import create_server

from bcc.core.cli import run_command, tool_parser
from bcc.core.errors import BadInput
from bcc.core.log import get_logger
from bcc.review import accounts
from bcc.review.app import create_app
from bcc.review.db import DEFAULT_URL, create_database, database, upgrade_database
from bcc.review.export import check_out, export_annotations
from bcc.review.worklists import import_worklist, load_worklist

log = get_logger(__name__)

HOST = "127.0.0.1"  # never another interface: no image or score leaves the machine


def serve(sessions: sessionmaker[Session], url: str, port: int) -> None:
    app = create_app(sessions)
    try:
        server = create_server(app, host=HOST, port=port, threads=8)
    except OSError as e:
        raise BadInput(f"--port {port}: cannot listen on {HOST}:{port} ({e.strerror}); choose another port") from None
    log.info(f"[bcc.review] http://localhost:{server.effective_port}/ (database {url}; Ctrl-C stops)")
    server.run()


def _password(from_stdin: bool) -> str:
    """The new password: one line of standard input, or typed twice at the terminal."""
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if not sys.stdin.isatty():
        raise BadInput("no terminal to type the password at; pass --password-stdin and give it on standard input")
    first = getpass.getpass("New password: ")
    if getpass.getpass("Again: ") != first:
        raise BadInput("the two passwords differ; nothing changed")
    return first


def _user(a, sessions: sessionmaker[Session]) -> None:
    if a.action == "list":
        for name, can in accounts.list_reviewers(sessions):
            print(name if can else f"{name} (no password yet: `user passwd {name}`)")
        return
    if a.name is None:
        raise BadInput(f"user {a.action}: give the reviewer's name")
    if a.action == "add":
        name = accounts.check_free(sessions, a.name)  # refused before the password is asked for
        r = accounts.add_reviewer(sessions, name, _password(a.password_stdin))
        log.info(f"[bcc.review] reviewer {r.name!r} added; they sign in at the review app with this name")
    else:
        accounts.find(sessions, a.name)  # an unknown name is refused before the password is asked for
        accounts.set_password(sessions, a.name, _password(a.password_stdin))
        log.info(f"[bcc.review] password of {a.name.strip()!r} changed; every browser signed in as them is signed out")


def main(argv: list[str] | None = None) -> int:
    p = tool_parser("review", "The review loop: import a triage worklist, serve it to reviewers, export verdicts.")
    sub = p.add_subparsers(dest="command", required=True)
    init = sub.add_parser("init", help="create a new review database (a SQLite file readable by its owner only)")
    upg = sub.add_parser("upgrade", help="bring an existing review database to this version's schema (back it up first)")
    usr = sub.add_parser("user", help="reviewer accounts: add NAME, passwd NAME, list")
    usr.add_argument("action", choices=["add", "passwd", "list"])
    usr.add_argument("name", nargs="?", help="the reviewer's name: their rater name in the export")
    usr.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    imp = sub.add_parser("import", help="import a bcc.predict output folder (triage.csv, run.json, maps.npy)")
    imp.add_argument("folder", type=Path)
    imp.add_argument("--name", help="the worklist's name (default: the folder's name)")
    srv = sub.add_parser("serve", help=f"serve the review app on {HOST} (this machine only)")
    srv.add_argument("--port", type=int, default=8765)
    exp = sub.add_parser("export", help="write the verdicts as annotations.csv rows, one rater per reviewer")
    exp.add_argument("--out", type=Path, required=True, help="a new CSV file (never overwritten)")
    exp.add_argument("--dataset", type=Path, help="match cases to this dataset's images and append to its annotations")
    for s in (init, upg, usr, imp, srv, exp):
        s.add_argument("--db", default=DEFAULT_URL, help=f"SQLAlchemy database URL (default {DEFAULT_URL})")
        s.add_argument("--debug", action="store_true", help="show the traceback of a failure")
    a = p.parse_args(argv)

    def body() -> None:
        if a.command == "init":
            create_database(a.db).kw["bind"].dispose()
            log.info(f"[bcc.review] created the review database {a.db}; add reviewers: "
                     f"python -m bcc.review user add NAME")
        elif a.command == "upgrade":
            before, after = upgrade_database(a.db)
            log.info(f"[bcc.review] {a.db}: schema {before or 'from before migrations'} → {after}")
        elif a.command == "user":
            with database(a.db) as sessions:
                _user(a, sessions)
        elif a.command == "import":
            loaded = load_worklist(a.folder)  # everything checked before the database is opened
            with database(a.db) as sessions:
                import_worklist(sessions, loaded, a.name)
        elif a.command == "serve":
            if not 0 <= a.port <= 65535:
                raise BadInput(f"--port {a.port}: expected 0-65535")
            with database(a.db) as sessions:
                serve(sessions, a.db, a.port)
        else:
            check_out(a.out)
            if a.dataset is not None and not (a.dataset / "images.csv").is_file():
                raise BadInput(f"--dataset {a.dataset}: no images.csv there; pass the dataset's folder")
            with database(a.db) as sessions:
                export_annotations(sessions, a.out, a.dataset)

    return run_command("bcc.review", body, a.debug)


if __name__ == "__main__":
    sys.exit(main())
