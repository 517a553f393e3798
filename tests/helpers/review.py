"""The review loop's test helpers: a bcc.predict output folder made without a model (triage's own writer
over made-up scores), a review database with reviewer accounts, the app served for a test (waitress on
127.0.0.1, a free port), Debian's chromium driven by selenium (skipped where either is missing; .ci/run
installs them), and a throwaway database on the PostgreSQL server .ci/run starts."""
from __future__ import annotations

import os
import re
import shutil
import threading
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from waitress import create_server

from bcc.core.jobs import file_sha256
from bcc.deploy.report_html import lesion_figures
from bcc.deploy.thresholds import Thresholds
from bcc.deploy.triage import Lesion, worklist, write_worklist
from bcc.explanation.batch import input_name, list_inputs, read_input
from bcc.review.accounts import add_reviewer
from bcc.review.app import create_app
from bcc.review.db import create_database, open_db

PASSWORD = "correct horse battery"  # every test reviewer's


def triage_output(inbox: Path, out: Path, maps: bool = True, seed: int = 0, **info) -> Path:
    """`out` as ``bcc.predict input=<inbox>`` writes it, from made-up scores and maps (no model): the
    files the review imports, written by triage's own code. `info` replaces run.json entries."""
    root, files = list_inputs(inbox)
    rng = np.random.default_rng(seed)
    lesions = []
    for p in files:
        rgb, _ = read_input(p, 100.0)
        lesions.append(Lesion(input_name(p, root)[0], "", probs=rng.uniform(size=8), figures=lesion_figures(rgb),
                              cams=rng.normal(size=(8, 2, 2)).astype(np.float32) if maps else None,
                              sha256=file_sha256(p)))
    th = Thresholds()
    table, ordered = worklist(lesions, th)
    write_worklist(out, table, ordered, {
        "model": "made-up scores", "input": str(inbox), "input_path": os.fsdecode(inbox.resolve()),
        "thresholds": th.as_dict(), "explanations": "made up", "input_size": 32, "preprocess": {"resize": "square"},
        "not_trained": [], "guarantee": None, **info})
    return out


def review_db(url: str, *reviewers: str) -> str:
    """A new review database at `url` with an account per name (password ``PASSWORD``)."""
    sessions = create_database(url)
    for name in reviewers:
        add_reviewer(sessions, name, PASSWORD)
    sessions.kw["bind"].dispose()
    return url


def client(url: str, name: str, password: str = PASSWORD):
    """A Flask test client of the app over `url`, signed in as `name`; returns (client, CSRF token)."""
    c = create_app(open_db(url), secret=b"test").test_client()
    token = csrf(c, "/login")
    c.post("/login", data={"name": name, "password": password, "csrf_token": token})
    return c, csrf(c, "/")


def csrf(c, path: str) -> str:
    """The CSRF token in the form of the page at `path`."""
    m = re.search(r'name="csrf_token" value="([^"]+)"', c.get(path, follow_redirects=True).get_data(as_text=True))
    assert m, f"no form on {path}"
    return m.group(1)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A throwaway database on the PostgreSQL server named by BCC_TEST_POSTGRES_URL (.ci/run starts one);
    the test skips without it."""
    import sqlalchemy as sa

    base = os.environ.get("BCC_TEST_POSTGRES_URL")
    if not base:
        pytest.skip("no PostgreSQL server (BCC_TEST_POSTGRES_URL; .ci/run starts one)")
    admin = sa.create_engine(sa.make_url(base).set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT")
    name = f"bcc_test_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f"CREATE DATABASE {name}"))
    except sa.exc.OperationalError as e:
        pytest.skip(f"PostgreSQL at BCC_TEST_POSTGRES_URL cannot be reached ({e.orig})")
    try:
        yield sa.make_url(base).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()


@contextmanager
def served(url: str) -> Iterator[str]:
    """The review app over database `url`, served until the block ends; yields its base URL."""
    server = create_server(create_app(open_db(url)), host="127.0.0.1", port=0, threads=8)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        yield f"http://localhost:{server.effective_port}"
    finally:
        server.close()
        server.task_dispatcher.shutdown()


@contextmanager
def browser(profile: Path):
    """A headless chromium under selenium (Debian's chromium and chromedriver: no download)."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if chromium is None or driver_path is None:
        pytest.skip("no chromium/chromedriver installed (.ci/run installs Debian's chromium and chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--user-data-dir={profile}", "--window-size=1300,1800"):
        opts.add_argument(arg)
    driver = _start_chromium(webdriver, Service, driver_path, opts, profile)
    driver.implicitly_wait(30)  # an element not there yet is waited for (a loaded machine renders slowly)
    try:
        yield driver
    finally:
        driver.quit()


def _start_chromium(webdriver, service, driver_path: str, opts, profile: Path, tries: int = 3):
    """Chromium may fail to start on a loaded machine (its DevTools port not written in time): a start that
    fails is tried again, with a fresh profile folder (a crashed start can leave its lock in the first)."""
    from selenium.common.exceptions import WebDriverException

    for attempt in range(1, tries + 1):
        try:
            return webdriver.Chrome(service=service(driver_path), options=opts)
        except WebDriverException as e:
            if attempt == tries:
                raise
            warnings.warn(f"chromium did not start (try {attempt} of {tries}): {e.msg}", stacklevel=2)
            opts.arguments[:] = [a for a in opts.arguments if not a.startswith("--user-data-dir=")]
            opts.add_argument(f"--user-data-dir={profile.with_name(f'{profile.name}-start{attempt}')}")


def _wait(driver, condition) -> None:
    """Wait up to 60 s for `condition`, asking again on any driver error: while a page is being replaced,
    chromedriver can answer a question about the old page's nodes with "unknown error: Node with given id
    does not belong to the document" instead of a stale-element error (seen in CI)."""
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 60, ignored_exceptions=(WebDriverException,)).until(condition)


def record(driver) -> None:
    """Click "Record verdict" and wait until the next page has replaced this one."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions

    button = driver.find_element(By.ID, "record")
    button.click()
    _wait(driver, expected_conditions.staleness_of(button))


def sign_in(driver, base: str, name: str, password: str = PASSWORD) -> None:
    """Open the start page, sign in as `name` and wait for the signed-in page: a click does not wait for
    the POST, and a page requested before its answer would find no reviewer and be sent back to sign in."""
    from selenium.webdriver.common.by import By

    driver.get(base)
    driver.find_element(By.ID, "name").send_keys(name)
    driver.find_element(By.ID, "password").send_keys(password)
    driver.find_element(By.ID, "start").click()
    _wait(driver, lambda d: d.find_elements(By.ID, "reviewer") and d.find_element(By.ID, "reviewer").text == name)
