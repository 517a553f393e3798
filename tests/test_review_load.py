"""The review app under load, on SQLite and on a real PostgreSQL server (issue 29, "Load held").

20 reviewers at once record 2,000 verdicts (a worklist of 50 cases, each case twice: the second round a
changed mind, so every verdict has two versions) against ``python -m bcc.review serve`` on 127.0.0.1,
and the server process is killed (SIGKILL) half-way and started again on the same database and port.
Each client does what a browser does: a request that fails, or that finds itself signed out (a new
server has a new cookie secret), signs in again and sends the same form — its submission id included —
again. Afterwards the database holds every verdict exactly once, in each reviewer's order, and the
p95 page time (GET of a case page and POST of a verdict, answered ones) is printed. Bounded: every loop
has a count and every request a timeout; only 127.0.0.1 is addressed.

The PostgreSQL run needs the server .ci/run starts (BCC_TEST_POSTGRES_URL); it skips without one.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import requests
from sqlalchemy import select

from bcc.core.patterns import CODES
from bcc.review.db import Case, Verdict, open_db
from bcc.review.worklists import import_worklist
from tests.helpers.review import PASSWORD, postgres_url, review_db, triage_output  # noqa: F401 (a fixture)

REVIEWERS, CASES, ROUNDS = 20, 50, 2  # 20 × 50 × 2 = 2,000 verdicts
TIMEOUT = 60  # seconds a request may take (a loaded 2-core machine)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``python -m bcc.review serve`` as its own process, killed and restarted at will."""

    def __init__(self, url: str, port: int, log: Path):
        self.url, self.port, self.log, self.proc = url, port, log, None

    def start(self) -> None:
        with open(self.log, "a") as f:
            self.proc = subprocess.Popen([sys.executable, "-m", "bcc.review", "serve", "--db", self.url, "--port",
                                          str(self.port)], stdout=f, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                requests.get(f"http://localhost:{self.port}/login", timeout=5)
                return
            except requests.ConnectionError:
                assert self.proc.poll() is None, self.log.read_text()
                time.sleep(0.2)
        raise AssertionError(f"the server did not start: {self.log.read_text()}")

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)


class Reviewer(threading.Thread):
    """One reviewer's browser: signs in, then records their planned verdicts in order, retrying each form
    until the server has answered it."""

    def __init__(self, base: str, name: str, plan: list[dict], done: list[int], lock: threading.Lock):
        super().__init__(daemon=True)
        self.base, self.name, self.plan, self.done, self.lock = base, name, plan, done, lock
        self.times: list[float] = []
        self.retries = 0
        self.error: BaseException | None = None
        self.http = requests.Session()

    def _csrf(self, page: str) -> str:
        m = re.search(r'name="csrf_token" value="([^"]+)"', page)
        assert m, page[:500]
        return m.group(1)

    def _sign_in(self) -> None:
        self.http.cookies.clear()
        token = self._csrf(self.http.get(f"{self.base}/login", timeout=TIMEOUT).text)
        r = self.http.post(f"{self.base}/login", data={"name": self.name, "password": PASSWORD, "csrf_token": token},
                           timeout=TIMEOUT, allow_redirects=False)
        assert r.status_code == 302 and r.headers["Location"].endswith("/"), r.text[:300]

    def _send(self, v: dict) -> bool:
        """GET the case page, POST the verdict; True when the server answered that it recorded it."""
        t0 = time.perf_counter()
        page = self.http.get(f"{self.base}/case/{v['case']}", timeout=TIMEOUT, allow_redirects=False)
        if page.status_code != 200:
            return False  # signed out (a new server): sign in again
        self.times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        r = self.http.post(f"{self.base}/case/{v['case']}", timeout=TIMEOUT, allow_redirects=False, data={
            "csrf_token": self._csrf(page.text), "bcc": v["bcc"], "pattern": v["pattern"], "note": v["note"],
            "submission": v["submission"]})
        if r.status_code == 302 and "/login" not in r.headers["Location"]:
            self.times.append(time.perf_counter() - t0)
            return True
        assert r.status_code in (302, 400), (r.status_code, r.text[:300])  # signed out, or a stale form
        return False

    def run(self) -> None:
        try:
            self._sign_in()
            for v in self.plan:
                for _attempt in range(100):
                    try:
                        if self._send(v):
                            break
                        self._sign_in()
                    except requests.RequestException:  # the server is down: wait and send the same form
                        time.sleep(0.5)
                    self.retries += 1
                else:
                    raise AssertionError(f"{self.name}: {v['submission']} never recorded")
                with self.lock:
                    self.done[0] += 1
        except BaseException as e:  # noqa: BLE001 — reported by the main thread
            self.error = e


def _plan(case_ids: list[int], names: list[str]) -> dict[str, list[dict]]:
    """Each reviewer's verdicts in order: every case once, then every case again with another verdict."""
    rng = np.random.default_rng(0)
    plan: dict[str, list[dict]] = {}
    for i, name in enumerate(names):
        plan[name] = [{"case": cid, "bcc": str(int(rng.integers(2))), "note": f"round {r} by {name}",
                       "pattern": [c for c in CODES if rng.random() < 0.3], "submission": f"{i:04x}{r:04x}{cid:024x}"}
                      for r in range(ROUNDS) for cid in case_ids]
    return plan


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_twenty_reviewers_two_thousand_verdicts_and_a_restart(backend, tmp_path, data_dir, request, capsys):
    url = (f"sqlite:///{tmp_path / 'review.db'}" if backend == "sqlite"
           else request.getfixturevalue("postgres_url"))
    names = [f"Reviewer {i:02d}" for i in range(REVIEWERS)]
    review_db(url, *names)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for p in sorted((data_dir / "synthetic-smoke" / "images").glob("*.png"))[:CASES]:
        shutil.copy(p, inbox / p.name)
    sessions = open_db(url)
    import_worklist(sessions, triage_output(inbox, tmp_path / "triage"), "load")
    with sessions() as s:
        case_ids = list(s.scalars(select(Case.id).order_by(Case.rank)))
    plan = _plan(case_ids, names)
    total = sum(map(len, plan.values()))
    assert total == 2000

    server = Server(url, _free_port(), tmp_path / "server.log")
    server.start()
    done, lock = [0], threading.Lock()
    clients = [Reviewer(f"http://localhost:{server.port}", n, plan[n], done, lock) for n in names]
    t0 = time.perf_counter()
    try:
        for c in clients:
            c.start()
        deadline = time.monotonic() + 900
        while done[0] < total // 2 and time.monotonic() < deadline and any(c.is_alive() for c in clients):
            time.sleep(0.05)
        server.kill()  # half-way: whatever was in flight is cut off
        restarted_at = done[0]
        server.start()
        for c in clients:
            c.join(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if server.proc.poll() is None:
            server.kill()
    seconds = time.perf_counter() - t0
    errors = [c.error for c in clients if c.error is not None or c.is_alive()]
    assert not errors, errors

    with sessions() as s:
        rows = s.execute(select(Verdict.submission, Verdict.case_id, Verdict.version, Verdict.bcc, Verdict.patterns,
                                Verdict.note)).all()
    sessions.kw["bind"].dispose()
    assert len(rows) == total  # none lost, none twice
    got = {r.submission: r for r in rows}
    for name in names:
        for r, v in enumerate(plan[name]):
            row = got[v["submission"]]
            assert row.case_id == v["case"] and row.version == 1 + r // CASES  # in the reviewer's order
            assert (str(int(row.bcc)), [c for c in CODES if row.patterns[c]], row.note) == \
                (v["bcc"], v["pattern"], v["note"])
    times = np.array([t for c in clients for t in c.times])
    p95 = float(np.percentile(times, 95))
    line = (f"[load {backend}] {total} verdicts by {REVIEWERS} reviewers in {seconds:.0f} s, server killed and "
            f"restarted after {restarted_at}; {sum(c.retries for c in clients)} requests retried; page time "
            f"p50 {1000 * np.median(times):.0f} ms, p95 {1000 * p95:.0f} ms over {len(times)} answered requests "
            f"({os.cpu_count()} CPUs)")
    with capsys.disabled():
        print(f"\n{line}")
