"""The review loop's protections (issue 29): accounts and server-side sessions, CSRF and flashed messages,
the database's schema (migrations, an older database upgraded, mode 0600), nothing lost (verdict
versions, export keys, spreadsheet guarding read back), and what the import refuses.

Worklists here come from triage's own writer over made-up scores (``tests.helpers.review.triage_output``),
so no model is trained; tests/test_review.py runs the loop on a real bcc.predict run. Browser tests
(sign-in/out, CSRF, flash) are marked slow.
"""
from __future__ import annotations

import csv
import datetime as dt
import json
import shutil
import sqlite3
import stat
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy import select

from bcc.core.errors import BadInput
from bcc.core.patterns import CODES, OUTPUTS
from bcc.review.__main__ import main as review_main
from bcc.review.accounts import add_reviewer, list_reviewers
from bcc.review.db import Case, Verdict, _alembic, _engine, open_db, upgrade_database
from tests.helpers.review import (  # noqa: F401 (postgres_url: a fixture)
    PASSWORD,
    browser,
    client,
    csrf,
    postgres_url,
    review_db,
    served,
    sign_in,
    triage_output,
)


@pytest.fixture
def inbox(data_dir, tmp_path) -> Path:
    d = tmp_path / "inbox"
    d.mkdir()
    for p in sorted((data_dir / "synthetic-smoke" / "images").glob("*.png"))[:3]:
        shutil.copy(p, d / p.name)
    return d


@pytest.fixture
def db(tmp_path, inbox) -> str:
    """A database with reviewers Dr A and Dr B and the inbox imported as worklist "monday"."""
    url = review_db(f"sqlite:///{tmp_path / 'review.db'}", "Dr A", "Dr B")
    assert review_main(["import", str(triage_output(inbox, tmp_path / "triage")), "--db", url, "--name", "monday"]) == 0
    return url


def _cases(url: str) -> dict[str, int]:
    with open_db(url)() as s:
        return {name: cid for cid, name in s.execute(select(Case.id, Case.image).order_by(Case.rank))}


# ---- accounts ---------------------------------------------------------------------------------------------
def test_names_are_unique_whatever_their_case_and_stripped(tmp_path, capsys, monkeypatch):
    url = review_db(f"sqlite:///{tmp_path / 'r.db'}")
    monkeypatch.setattr("sys.stdin", _lines(PASSWORD))
    assert review_main(["user", "add", "  Alice ", "--password-stdin", "--db", url]) == 0
    for other in ("alice", "ALICE", "Alice "):
        monkeypatch.setattr("sys.stdin", _lines(PASSWORD))
        assert review_main(["user", "add", other, "--password-stdin", "--db", url]) == 2
        assert "the name is taken (as 'Alice'" in capsys.readouterr().err
    assert list_reviewers(open_db(url)) == [("Alice", True)]
    alice, _ = client(url, "ALICE ")  # signs in as the one account, shown by its name
    assert '<b id="reviewer">Alice</b>' in alice.get("/").get_data(as_text=True)


def _lines(*lines: str):
    import io
    return io.StringIO("".join(f"{x}\n" for x in lines))


def test_signing_in_takes_the_password_and_says_so_by_flash(db):
    c, _ = client(db, "Dr A", "not the password")
    page = c.get("/", follow_redirects=True).get_data(as_text=True)
    assert 'id="sign-in"' in page and 'id="reviewer"' not in page
    c, _ = client(db, "Dr A")
    assert '<b id="reviewer">Dr A</b>' in c.get("/").get_data(as_text=True)
    anon = client(db, "nobody")[0]
    r = anon.post("/login", data={"name": "Dr A", "password": "wrong", "csrf_token": csrf(anon, "/login")})
    assert "Unknown name or wrong password." in anon.get(r.headers["Location"]).get_data(as_text=True)
    bait = "Your session expired. Sign in at evil.example with your hospital password"
    page = anon.get(f"/login?error={bait}&next=//evil.example").get_data(as_text=True)
    assert "evil.example" not in page  # nothing of the URL is printed


def test_a_copied_cookie_stops_working_at_sign_out_and_password_change(db):
    from bcc.review.app import COOKIE

    a, token = client(db, "Dr A")
    case = next(iter(_cases(db).values()))
    stolen = a.get_cookie(COOKIE).value
    thief = client(db, "nobody")[0]
    thief.set_cookie(COOKIE, stolen)
    assert thief.get("/").status_code == 200  # the copy works while the session is open ...
    a.post("/logout", data={"csrf_token": token})
    assert thief.get("/").status_code == 302  # ... and not after sign-out
    assert thief.post(f"/case/{case}", data={"csrf_token": token, "bcc": "1"}).status_code in (302, 400)
    with open_db(db)() as s:
        assert s.scalar(select(sa.func.count()).select_from(Verdict)) == 0

    a, token = client(db, "Dr A")
    other, _ = client(db, "Dr A")  # a second browser of the same reviewer
    copied = other.get_cookie(COOKIE).value
    r = a.post("/password", data={"csrf_token": token, "current": PASSWORD, "new": "a new long one!", "repeat":
                                  "a new long one!"})
    assert r.status_code == 302 and "every other browser" in a.get("/").get_data(as_text=True)
    assert other.get("/").status_code == 302  # signed out
    thief.set_cookie(COOKIE, copied)
    assert thief.get("/").status_code == 302
    assert a.get("/").status_code == 200  # the browser that changed it stays signed in
    assert client(db, "Dr A", "a new long one!")[0].get("/").status_code == 200
    assert client(db, "Dr A")[0].get("/").status_code == 302  # the old password no longer signs in


def test_cookie_and_forms(db):
    c, token = client(db, "Dr B")
    cookie = c.get_cookie("bcc_review")
    assert cookie is not None and cookie.http_only and cookie.same_site == "Strict"
    case = next(iter(_cases(db).values()))
    assert c.post(f"/case/{case}", data={"bcc": "1"}).status_code == 400  # no CSRF token
    assert c.post(f"/case/{case}", data={"bcc": "1", "csrf_token": "x" + token[1:]}).status_code == 400
    page = c.post("/logout").get_data(as_text=True)
    assert "security token is missing or stale" in page and c.get("/").status_code == 200  # not signed out
    assert c.post(f"/case/{case}", data={"csrf_token": token, "bcc": "maybe"}).status_code == 400


def test_the_same_form_sent_twice_is_one_verdict_and_changes_are_versions(db):
    a, token = client(db, "Dr A")
    case = next(iter(_cases(db).values()))
    form = {"csrf_token": token, "bcc": "1", "pattern": ["AT"], "submission": "0" * 32}
    assert a.post(f"/case/{case}", data=form).status_code == 302
    assert a.post(f"/case/{case}", data=form).status_code == 302  # a retry, a double click
    assert a.post(f"/case/{case}", data={**form, "bcc": "0", "submission": "1" * 32}).status_code == 302
    with open_db(db)() as s:
        got = [(v.version, v.bcc, v.submission) for v in s.scalars(select(Verdict).order_by(Verdict.version))]
    assert got == [(1, True, "0" * 32), (2, False, "1" * 32)]


# ---- the database ----------------------------------------------------------------------------------------
def test_init_makes_an_owner_only_file_and_every_other_command_refuses_a_missing_one(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'review.db'}"
    assert review_main(["init", "--db", url]) == 0
    add_reviewer(open_db(url), "Dr A", PASSWORD)  # writes: the WAL files appear beside it
    for p in tmp_path.glob("review.db*"):
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, p
    assert review_main(["init", "--db", url]) == 2
    assert "exists; `init` only creates a new database" in capsys.readouterr().err
    typo = f"sqlite:///{tmp_path / 'reveiw.db'}"
    for argv in (["serve"], ["export", "--out", str(tmp_path / "a.csv")], ["user", "list"]):
        assert review_main([*argv, "--db", typo]) == 2
        assert "no review database there (a mistyped path?)" in capsys.readouterr().err
    assert not (tmp_path / "reveiw.db").exists()


def _legacy(url: str) -> str:
    """A database as bcc wrote it before the migrations: its schema (revision 0001) without Alembic's table,
    and the verdicts of 'Alice', 'alice ' and 'Bob' on one case."""
    engine = _engine(url, migrating=True)
    with engine.begin() as conn:
        command.upgrade(_alembic(conn), "0001")
        conn.execute(sa.text("DROP TABLE alembic_version"))
        conn.execute(sa.text("INSERT INTO worklists VALUES (1, 'old', '2026-01-01 00:00:00', 'm', :th, NULL, '[]')"),
                     {"th": json.dumps({"bcc": 0.5, "patterns": dict.fromkeys(CODES, 0.5),
                                        "uncertainty_band": 0.1, "source": "defaults"})})
        conn.execute(sa.text("INSERT INTO cases VALUES (1, 1, 1, 'x.png', :h, 0.9, :sc, 'BCC', 'BCC', "
                             "'p_bcc 0.55 is within 0.10; of the threshold', :jpeg, NULL, '[0, 0, 1, 1]')"),
                     {"h": "0" * 64, "sc": json.dumps(dict.fromkeys(OUTPUTS, 0.5)), "jpeg": b"\0"})
        for i, (name, bcc, when) in enumerate([("Alice", True, "10:00"), ("alice ", False, "11:00"),
                                               ("Bob", True, "09:00")]):
            conn.execute(sa.text("INSERT INTO verdicts VALUES (:i, 1, :n, :bcc, '{}', 'note', :when)"),
                         {"i": i + 1, "n": name, "bcc": bcc, "when": dt.datetime.fromisoformat(f"2026-01-02 {when}")})
    engine.dispose()
    return url


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_an_older_database_is_refused_then_upgraded(backend, tmp_path, capsys, request):
    url = _legacy(f"sqlite:///{tmp_path / 'old.db'}" if backend == "sqlite" else request.getfixturevalue("postgres_url"))
    if backend == "sqlite":
        (tmp_path / "old.db").chmod(0o644)
    assert review_main(["serve", "--db", url]) == 2
    assert "its schema is older (revision from before migrations)" in capsys.readouterr().err
    assert upgrade_database(url) == (None, "0002")
    if backend == "sqlite":
        assert stat.S_IMODE((tmp_path / "old.db").stat().st_mode) == 0o600
    sessions = open_db(url)
    assert list_reviewers(sessions) == [("Alice", False), ("Bob", False)]  # one Alice, no password yet
    with sessions() as s:
        got = sorted((v.reviewer.name, v.version, v.bcc) for v in s.scalars(select(Verdict)))
        assert s.get(Case, 1).review_reasons == ["p_bcc 0.55 is within 0.10; of the threshold"]
    assert got == [("Alice", 1, True), ("Alice", 2, False), ("Bob", 1, True)]
    assert review_main(["upgrade", "--db", url]) == 0  # again: nothing to do
    assert "schema 0002 → 0002" in capsys.readouterr().out
    sessions.kw["bind"].dispose()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_the_migrations_build_the_models_schema_and_the_loop_runs(backend, tmp_path, inbox, request, monkeypatch):
    """`init` on an empty database (a PostgreSQL one by its plain postgresql:// URL) builds exactly the
    tables the code declares; accounts, import, a verdict and the export then work on it."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from bcc.review.db import Base

    url = f"sqlite:///{tmp_path / 'r.db'}" if backend == "sqlite" else request.getfixturevalue("postgres_url")
    assert review_main(["init", "--db", url]) == 0
    assert review_main(["init", "--db", url]) == 2  # never over a database
    engine = _engine(url)
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    engine.dispose()
    monkeypatch.setattr("sys.stdin", _lines(PASSWORD))
    assert review_main(["user", "add", "Dr A", "--password-stdin", "--db", url]) == 0
    assert review_main(["import", str(triage_output(inbox, tmp_path / "triage")), "--db", url]) == 0
    a, token = client(url, "Dr A")
    case = next(iter(_cases(url).values()))
    assert a.post(f"/case/{case}", data={"csrf_token": token, "bcc": "1", "pattern": ["AT"]}).status_code == 302
    assert review_main(["export", "--db", url, "--out", str(tmp_path / "a.csv")]) == 0
    assert pd.read_csv(tmp_path / "a.csv").AT.tolist() == [1]


# ---- export: keys, versions, guarding --------------------------------------------------------------------
def test_the_same_name_in_two_worklists_and_hostile_notes_export_apart(tmp_path, data_dir, capsys):
    """Monday's and Tuesday's inbox both hold `=x.png` (two different pictures), Tuesday also `'=x.png`:
    every verdict is exported under its picture's content hash, notes led by a formula character or a
    carriage return are guarded and read back as one row each, and the audit says which version it took."""
    imgs = sorted((data_dir / "synthetic-smoke" / "images").glob("*.png"))
    url = review_db(f"sqlite:///{tmp_path / 'r.db'}", "Dr A")
    for day, names in (("monday", {"=x.png": imgs[0]}), ("tuesday", {"=x.png": imgs[1], "'=x.png": imgs[2]})):
        inbox = tmp_path / f"in-{day}"
        inbox.mkdir()
        for name, src in names.items():
            shutil.copy(src, inbox / name)
        assert review_main(["import", str(triage_output(inbox, tmp_path / day)), "--db", url, "--name", day]) == 0
    a, token = client(url, "Dr A")
    with open_db(url)() as s:
        cases = [(c.id, c.worklist.name, c.image) for c in s.scalars(select(Case))]
    assert sorted(name for _, _, name in cases) == ["'=x.png", "=x.png", "=x.png"]  # not collapsed on import
    notes = ["=HYPERLINK(\"http://evil.example\",\"open\")", "\rled by a carriage return", "@SUM(1+1)"]
    for (cid, _, _), note in zip(cases, notes, strict=True):
        a.post(f"/case/{cid}", data={"csrf_token": token, "bcc": "0", "note": "first"})
        a.post(f"/case/{cid}", data={"csrf_token": token, "bcc": "1", "pattern": ["AT"], "note": note})
    out = tmp_path / "ann.csv"
    assert review_main(["export", "--db", url, "--out", str(out)]) == 0
    assert "images keyed by content sha256" in capsys.readouterr().out
    ann = pd.read_csv(out, dtype=str)
    assert len(ann) == 3 and ann.image_id.nunique() == 3 and (ann.image_id.str.fullmatch("[0-9a-f]{64}")).all()
    audit = pd.read_csv(tmp_path / "ann.verdicts.csv", dtype=str, keep_default_na=False)
    assert len(audit) == 3 and set(audit.worklist) == {"monday", "tuesday"} and (audit.exported == "1").all()
    assert (audit.version == "2").all() and (audit.versions == "2").all()
    assert sorted(audit.note) == sorted("'" + n for n in notes)  # guarded, one row each
    with open(tmp_path / "ann.verdicts.csv", newline="", encoding="utf-8") as f:
        cells = [cell for row in csv.reader(f) for cell in row]
    assert not [c for c in cells if c[:1] in ("=", "+", "-", "@", "\t", "\r")]


def test_a_picture_seen_twice_by_one_reviewer_counts_once_and_the_audit_says_why(tmp_path, inbox):
    url = review_db(f"sqlite:///{tmp_path / 'r.db'}", "Dr A")
    for day in ("monday", "tuesday"):
        assert review_main(["import", str(triage_output(inbox, tmp_path / day)), "--db", url, "--name", day]) == 0
    a, token = client(url, "Dr A")
    with open_db(url)() as s:
        ids = {(c.worklist.name, c.image): c.id for c in s.scalars(select(Case))}
    first = min(p.name for p in inbox.iterdir())
    a.post(f"/case/{ids[('monday', first)]}", data={"csrf_token": token, "bcc": "0"})
    a.post(f"/case/{ids[('tuesday', first)]}", data={"csrf_token": token, "bcc": "1", "pattern": ["AT"]})
    assert review_main(["export", "--db", url, "--out", str(tmp_path / "a.csv")]) == 0
    audit = pd.read_csv(tmp_path / "a.verdicts.csv", keep_default_na=False)
    assert len(pd.read_csv(tmp_path / "a.csv")) == 1 and audit.exported.tolist() == [1, 0]
    assert audit.worklist.tolist() == ["tuesday", "monday"]
    assert audit.why_not[1] == f"superseded by the later verdict in worklist tuesday, case {first}"


# ---- the import --------------------------------------------------------------------------------------------
def test_a_picture_replaced_after_predict_is_refused_and_nothing_is_imported(tmp_path, inbox, data_dir, capsys):
    url = review_db(f"sqlite:///{tmp_path / 'r.db'}")
    out = triage_output(inbox, tmp_path / "triage")
    victim = sorted(inbox.iterdir())[1]
    shutil.copy(max((data_dir / "synthetic-smoke" / "images").glob("*.png")), victim)
    assert review_main(["import", str(out), "--db", url]) == 2
    assert f"{victim.name}: changed since bcc.predict scored it" in capsys.readouterr().err
    assert _cases(url) == {}


def test_review_reasons_are_a_list_from_triage_to_the_page(db, tmp_path):
    t = pd.read_csv(tmp_path / "triage" / "triage.csv")
    reasons = [json.loads(r) for r in t.review_reason]
    assert all(isinstance(r, list) for r in reasons) and any(reasons)
    a, _ = client(db, "Dr A")
    with open_db(db)() as s:
        flagged = next(c for c in s.scalars(select(Case)) if c.review_reasons)
    assert flagged.review_reasons == reasons[flagged.rank - 1]
    assert "; ".join(flagged.review_reasons) in a.get(f"/case/{flagged.id}").get_data(as_text=True)


def test_a_malformed_guarantee_never_reaches_the_pages(tmp_path, inbox, capsys):
    url = review_db(f"sqlite:///{tmp_path / 'r.db'}", "Dr A")
    out = triage_output(inbox, tmp_path / "triage")
    run = json.loads((out / "run.json").read_text())
    (out / "run.json").write_text(json.dumps({**run, "guarantee": {"epsilon": "five percent", "delta": 0.1}}))
    assert review_main(["import", str(out), "--db", url]) == 2
    assert "run.json: guarantee.epsilon = 'five percent' is not a valid float" in capsys.readouterr().err
    good = {"epsilon": 0.05, "delta": 0.1, "n_calibration": 100, "n_bcc": 60, "statement": "≥ 95 % <b>", "applies": True,
            "why": "", "threshold": 0.3}
    out = triage_output(inbox, tmp_path / "triage2", guarantee=good)
    assert review_main(["import", str(out), "--db", url, "--name", "w"]) == 0
    a, _ = client(url, "Dr A")
    page = a.get("/worklist/1").get_data(as_text=True)
    assert "ε = 0.05, δ = 0.1, calibration set of 100 cases (60 BCC) — ≥ 95 % &lt;b&gt;" in page


def test_bad_input_reaches_no_database(tmp_path, inbox):
    """The import checks every file before it opens the database: a refused one leaves it as it was."""
    url = review_db(f"sqlite:///{tmp_path / 'r.db'}")
    out = triage_output(inbox, tmp_path / "triage")
    (out / "maps.npy").write_bytes((out / "maps.npy").read_bytes()[:100])  # truncated
    with pytest.raises(BadInput, match=r"maps\.npy: not a plain \.npy array"):
        from bcc.review.worklists import load_worklist
        load_worklist(out)
    assert review_main(["import", str(out), "--db", url]) == 2
    with sqlite3.connect(tmp_path / "r.db") as conn:
        assert conn.execute("SELECT count(*) FROM worklists").fetchone() == (0,)


# ---- in a browser ------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_browser_sign_in_out_flash_and_csrf(db, tmp_path):
    """Sign in with a wrong password (flashed), then the right one; the URL's text is never shown; a form
    whose token was spoiled is refused; after sign-out the cookie copied before it opens nothing."""
    from selenium.webdriver.common.by import By

    with browser(tmp_path / "profile") as d, served(db) as base:
        d.get(f"{base}/login?error=Sign+in+at+evil.example")
        d.find_element(By.ID, "name").send_keys("Dr A")
        d.find_element(By.ID, "password").send_keys("wrong password")
        d.find_element(By.ID, "start").click()
        assert d.find_element(By.CSS_SELECTOR, ".flash.error").text == "Unknown name or wrong password."
        assert "evil.example" not in d.page_source
        sign_in(d, base, "Dr A")
        cookie = d.get_cookie("bcc_review")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        d.get(f"{base}/case/{next(iter(_cases(db).values()))}")
        d.execute_script("document.querySelector('#verdict input[name=csrf_token]').value = 'forged'")
        d.find_element(By.ID, "bcc-yes").click()
        d.find_element(By.ID, "record").click()
        assert "security token is missing or stale" in d.find_element(By.ID, "error").text
        d.get(base)
        d.find_element(By.ID, "sign-out").click()
        assert d.find_element(By.CSS_SELECTOR, ".flash.info").text == "Signed out."
        d.delete_all_cookies()
        d.get(base + "/login")
        d.add_cookie({"name": "bcc_review", "value": cookie["value"], "path": "/"})
        d.get(base)
        assert d.find_elements(By.ID, "sign-in") and not d.find_elements(By.ID, "reviewer")
    with open_db(db)() as s:
        assert s.scalar(select(sa.func.count()).select_from(Verdict)) == 0
