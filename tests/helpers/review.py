"""The review app served for a test (waitress on 127.0.0.1, a free port) and Debian's chromium driven by
selenium (skipped where either is missing; .ci/run installs them)."""
from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from waitress import create_server

from bcc.review.app import create_app
from bcc.review.db import open_db


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
    driver = webdriver.Chrome(service=Service(driver_path), options=opts)
    driver.implicitly_wait(30)  # an element not there yet is waited for (a loaded machine renders slowly)
    try:
        yield driver
    finally:
        driver.quit()


def record(driver) -> None:
    """Click "Record verdict" and wait until the next page has replaced this one."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    button = driver.find_element(By.ID, "record")
    button.click()
    WebDriverWait(driver, 60).until(expected_conditions.staleness_of(button))


def sign_in(driver, base: str, name: str) -> None:
    """Open the start page, sign in as `name` and wait for the signed-in page: a click does not wait for
    the POST, and a page requested before its answer would find no reviewer and be sent back to sign in."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(base)
    driver.find_element(By.ID, "name").send_keys(name)
    driver.find_element(By.ID, "start").click()
    WebDriverWait(driver, 60).until(lambda d: d.find_elements(By.ID, "reviewer")
                                    and d.find_element(By.ID, "reviewer").text == name)
