"""``python -m bcc.review {import,serve,export}``: the review loop (docs/deploy.md).

    python -m bcc.review import triage/2026-12-04 [--db sqlite:///review.db] [--name NAME]
    python -m bcc.review serve [--db URL] [--port 8765]            # http://localhost:8765, this machine only
    python -m bcc.review export --out annotations.new.csv [--dataset DATASET_DIR] [--db URL]

A dataset-style tool (argparse, positional paths): it reads a bcc.predict output folder and writes one
file; ``--db`` is any SQLAlchemy URL (SQLite by default; a server database by its URL).
"""
from __future__ import annotations

import sys
from pathlib import Path

from waitress import create_server

from bcc.core.cli import run_command, tool_parser
from bcc.core.errors import BadInput
from bcc.review.app import create_app
from bcc.review.db import DEFAULT_URL, open_db
from bcc.review.worklists import check_out, export_annotations, import_worklist, read_run

HOST = "127.0.0.1"  # never another interface: no image or score leaves the machine


def serve(url: str, port: int, log=print) -> None:
    app = create_app(open_db(url))
    try:
        server = create_server(app, host=HOST, port=port, threads=8)
    except OSError as e:
        raise BadInput(f"--port {port}: cannot listen on {HOST}:{port} ({e.strerror}); choose another port") from None
    log(f"[bcc.review] http://localhost:{server.effective_port}/ (database {url}; Ctrl-C stops)", flush=True)
    server.run()


def main(argv: list[str] | None = None) -> int:
    p = tool_parser("review", "The review loop: import a triage worklist, serve it to reviewers, export verdicts.")
    sub = p.add_subparsers(dest="command", required=True)
    imp = sub.add_parser("import", help="import a bcc.predict output folder (triage.csv, run.json, maps.npy)")
    imp.add_argument("folder", type=Path)
    imp.add_argument("--name", help="the worklist's name (default: the folder's name)")
    srv = sub.add_parser("serve", help=f"serve the review app on {HOST} (this machine only)")
    srv.add_argument("--port", type=int, default=8765)
    exp = sub.add_parser("export", help="write the verdicts as annotations.csv rows, one rater per reviewer")
    exp.add_argument("--out", type=Path, required=True, help="a new CSV file (never overwritten)")
    exp.add_argument("--dataset", type=Path, help="match cases to this dataset's images and append to its annotations")
    for s in (imp, srv, exp):
        s.add_argument("--db", default=DEFAULT_URL, help=f"SQLAlchemy database URL (default {DEFAULT_URL})")
        s.add_argument("--debug", action="store_true", help="show the traceback of a failure")
    a = p.parse_args(argv)

    def body() -> None:
        if a.command == "import":
            read_run(a.folder)  # a folder that is no bcc.predict output creates no database
            import_worklist(open_db(a.db), a.folder, a.name)
        elif a.command == "serve":
            if not 0 <= a.port <= 65535:
                raise BadInput(f"--port {a.port}: expected 0-65535")
            serve(a.db, a.port)
        else:
            check_out(a.out)
            if a.dataset is not None and not (a.dataset / "images.csv").is_file():
                raise BadInput(f"--dataset {a.dataset}: no images.csv there; pass the dataset's folder")
            export_annotations(open_db(a.db, create=False), a.out, a.dataset)

    return run_command("bcc.review", body, a.debug)


if __name__ == "__main__":
    sys.exit(main())
