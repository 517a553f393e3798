"""Bad inputs of ``python -m bcc.review`` (see tests/bad_inputs/__init__.py): its database, its accounts and
the bcc.predict output folders it imports. Every row is refused with exit 2 naming the file, key or name
and the fix, and nothing is written: the import checks every file (and every picture's content hash)
before it opens the database. (The first review rows, from before accounts, stay in cases_deploy.py.)

A row's workspace holds ``lesions/`` (three good pictures), ``triage/`` (the folder bcc.predict would write
for them: triage's own writer over made-up scores) and ``r.db`` (a review database with account Alice).
"""
from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import sqlalchemy as sa
from alembic import command

from bcc.review.db import _alembic, _engine
from tests.bad_inputs.case import Case, Workspace
from tests.helpers.review import review_db, triage_output

REVIEW = "bcc.review.__main__:main"


def _db(ws: Workspace) -> str:
    return f"sqlite:///{ws.root / 'r.db'}"


def _ready(ws: Workspace) -> None:
    triage_output(ws.lesions(), ws.root / "triage")
    review_db(_db(ws), "Alice")


def _spoil(name: str, spoil):
    """Ready, then `spoil(path)` the triage folder's file `name`."""
    def prepare(ws: Workspace) -> None:
        _ready(ws)
        spoil(ws.root / "triage" / name)
    return prepare


def _run_json(**changes):
    """run.json with `changes` (a value None removes the key)."""
    def spoil(path) -> None:
        run = json.loads(path.read_text())
        for k, v in changes.items():
            run.pop(k) if v is None else run.__setitem__(k, v)
        path.write_text(json.dumps(run))
    return spoil


def _csv(edit):
    def spoil(path) -> None:
        edit(pd.read_csv(path, dtype=str, keep_default_na=False)).to_csv(path, index=False)
    return spoil


def _pickled(path) -> None:
    np.save(path, np.array([{"payload": "os.system"}], dtype=object), allow_pickle=True)


def _replace_picture(ws: Workspace) -> None:
    _ready(ws)
    victim = min(ws.lesions().iterdir())
    shutil.copy(max((ws.smoke_data / "images").glob("*.png")), victim)


def _legacy(ws: Workspace) -> None:
    """A review database of the schema before migrations (no alembic_version)."""
    engine = _engine(_db(ws), migrating=True)
    with engine.begin() as conn:
        command.upgrade(_alembic(conn), "0001")
        conn.execute(sa.text("DROP TABLE alembic_version"))
    engine.dispose()


def _import(ws: Workspace, *extra: str) -> list[str]:
    return ["import", str(ws.root / "triage"), "--db", _db(ws), *extra]


RERUN = r"re-run bcc\.predict into a new output folder and import that"
CASES = [
    # the folder imported
    Case("review/import-run-json-a-list", REVIEW, _import, 2,
         rf"triage/run\.json: holds a JSON list, not the object bcc\.predict writes; {RERUN}",
         _spoil("run.json", lambda p: p.write_text("[]"))),
    Case("review/import-run-json-not-json", REVIEW, _import, 2, r"triage/run\.json: not valid JSON",
         _spoil("run.json", lambda p: p.write_text('{"maps": tru'))),
    Case("review/import-run-json-from-an-older-predict", REVIEW, _import, 2,
         r"run\.json: no list of the scored pictures' names and content hashes", _spoil("run.json", _run_json(cases=None))),
    Case("review/import-thresholds-incomplete", REVIEW, _import, 2,
         r"run\.json: thresholds: missing patterns\.U, .*patterns\.AT \(a run records every threshold it used\)",
         _spoil("run.json", _run_json(thresholds={"bcc": 0.5, "uncertainty_band": 0.1, "patterns": {"PN": 0.5}}))),
    Case("review/import-guarantee-not-an-object", REVIEW, _import, 2,
         r"run\.json: guarantee is str, expected an object", _spoil("run.json", _run_json(guarantee="yes"))),
    Case("review/import-guarantee-missing-a-field", REVIEW, _import, 2,
         r"run\.json: guarantee\.n_bcc = None is not a valid int",
         _spoil("run.json", _run_json(guarantee={"epsilon": 0.05, "delta": 0.1, "n_calibration": 50, "statement": "s"}))),
    Case("review/import-guarantee-epsilon-out-of-range", REVIEW, _import, 2,
         r"guarantee\.epsilon = 5 is not a valid float in \(0, 1\)",
         _spoil("run.json", _run_json(guarantee={"epsilon": 5, "delta": 0.1, "n_calibration": 50, "n_bcc": 9,
                                                 "statement": "s"}))),
    Case("review/import-triage-csv-without-status", REVIEW, _import, 2,
         rf"triage/triage\.csv: missing column\(s\) status .*; {RERUN}",
         _spoil("triage.csv", _csv(lambda t: t.drop(columns="status")))),
    Case("review/import-review-reason-a-joined-string", REVIEW, _import, 2,
         r"triage\.csv: review_reason of scored row \d+ is not a JSON list of reasons",
         _spoil("triage.csv", _csv(lambda t: t.assign(review_reason="p_bcc near; the rule")))),
    Case("review/import-triage-rows-not-the-runs", REVIEW, _import, 2,
         r"run\.json: its cases do not match the scored rows of triage\.csv",
         _spoil("triage.csv", _csv(lambda t: t.assign(image=t.image[::-1].to_numpy())))),
    Case("review/import-pickled-maps", REVIEW, _import, 2,
         rf"triage/maps\.npy: not a plain \.npy array \(.*\); it should hold one \(8, h, w\) map stack per scored "
         rf"row of triage\.csv \(3\); {RERUN}", _spoil("maps.npy", _pickled)),
    Case("review/import-truncated-maps", REVIEW, _import, 2, r"triage/maps\.npy: not a plain \.npy array",
         _spoil("maps.npy", lambda p: p.write_bytes(p.read_bytes()[:-40]))),
    Case("review/import-maps-of-another-shape", REVIEW, _import, 2, r"maps\.npy: does not hold one \(8, h, w\) map stack",
         _spoil("maps.npy", lambda p: np.save(p, np.zeros((3, 7, 2, 2), np.float32)))),
    Case("review/import-a-picture-replaced-after-predict", REVIEW, _import, 2,
         r"lesions/.*\.png: changed since bcc\.predict scored it \(its content hash is sha256:.*\): its scores and "
         r"maps are not this picture's; re-run bcc\.predict on the inbox, then import", _replace_picture),
    Case("review/import-a-picture-gone", REVIEW, _import, 2,
         r"\.png is not in .*lesions any more; import right after bcc\.predict",
         lambda ws: (_ready(ws), min(ws.lesions().iterdir()).unlink())),
    # the database
    Case("review/import-into-a-mistyped-database", REVIEW,
         lambda ws: ["import", str(ws.root / "triage"), "--db", f"sqlite:///{ws.root / 'rveiew.db'}"], 2,
         r"--db sqlite:///.*rveiew\.db: no review database there \(a mistyped path\?\); `python -m bcc\.review "
         r"init --db .*` creates a new one", _ready),
    Case("review/serve-a-mistyped-database", REVIEW, lambda ws: ["serve", "--db", f"sqlite:///{ws.root / 'r.bd'}"], 2,
         r"--db sqlite:///.*r\.bd: no review database there", _ready),
    Case("review/serve-a-database-of-the-old-schema", REVIEW, lambda ws: ["serve", "--db", _db(ws)], 2,
         r"its schema is older \(revision from before migrations\) than this bcc's \(0002\); back it up, then "
         r"`python -m bcc\.review upgrade --db", _legacy),
    Case("review/upgrade-a-missing-database", REVIEW, lambda ws: ["upgrade", "--db", _db(ws)], 2,
         r"no review database there"),
    Case("review/init-over-an-existing-database", REVIEW, lambda ws: ["init", "--db", _db(ws)], 2,
         r"r\.db exists; `init` only creates a new database", _ready),
    Case("review/init-in-a-missing-folder", REVIEW, lambda ws: ["init", "--db", f"sqlite:///{ws.root / 'no' / 'r.db'}"],
         2, r"no folder .*/no; create it first or fix the path"),
    # accounts
    Case("review/user-add-a-name-taken-in-another-case", REVIEW,
         lambda ws: ["user", "add", " ALICE ", "--db", _db(ws)], 2,
         r"reviewer 'ALICE': the name is taken \(as 'Alice'; names are the same whatever their case\)", _ready),
    Case("review/user-add-a-name-that-is-no-rater-name", REVIEW,
         lambda ws: ["user", "add", "=HYPERLINK(x)", "--db", _db(ws)], 2,
         r"reviewer name '=HYPERLINK\(x\)': expected 1–40 letters, digits", _ready),
    Case("review/user-passwd-of-nobody", REVIEW, lambda ws: ["user", "passwd", "bob", "--db", _db(ws)], 2,
         r"reviewer 'bob': no such account; `user add` creates it", _ready),
    Case("review/user-add-without-a-terminal", REVIEW, lambda ws: ["user", "add", "bob", "--db", _db(ws)], 2,
         r"no terminal to type the password at; pass --password-stdin", _ready),
]
