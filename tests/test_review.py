"""The review loop (bcc.review) end to end on a real bcc.predict run: a triage worklist imported into a
database, reviewed in the app, verdicts recorded per reviewer account, and exported as raters that
bcc.consensus merges with the dataset's own.

Fast tests use Flask's test client; the ones marked slow drive a real headless chromium (selenium) against
the app served by waitress: open, review, record, reload — nothing lost, across a server restart too; two
reviewers at once; the maps drawn by the page equal the Python pipeline's. Accounts, sessions, CSRF, the
audit trail and the hostile cases: tests/test_review_trust.py; the load test: tests/test_review_load.py.
"""
from __future__ import annotations

import re
import shutil
import threading
import traceback
from urllib.parse import urlparse

import numpy as np
import pandas as pd
import pytest
import torch
from sqlalchemy import select

from bcc.cli.predict import main as predict_main
from bcc.core.patterns import CODES
from bcc.data.consensus import ensure_labels
from bcc.explanation.gradcam import postprocess
from bcc.explanation.render import heat_rgb
from bcc.review.__main__ import main as review_main
from bcc.review.db import Case, Verdict, open_db
from tests.helpers.review import browser, client, record, review_db, served, sign_in

pytestmark = pytest.mark.usefixtures("one_thread")
HOSTILE = '<img src=x onerror=alert(1)> "lesion" & co.png'


@pytest.fixture(scope="module")
def worklist(ckpt, data_dir, tmp_path_factory) -> dict:
    """A dataset copy, an inbox of five of its images (one under a hostile name) triaged by bcc.predict, and
    the output folder imported into a fresh SQLite database."""
    root = tmp_path_factory.mktemp("review")
    ds = root / "ds"
    shutil.copytree(data_dir / "synthetic-smoke", ds, ignore=shutil.ignore_patterns(".cache"))
    inbox = root / "inbox"
    inbox.mkdir()
    src = sorted((ds / "images").glob("*.png"))[:5]
    for p in src[:4]:
        shutil.copy(p, inbox / p.name)
    shutil.copy(src[4], inbox / HOSTILE)
    out = root / "triage"
    assert predict_main([f"checkpoint={ckpt}", f"input={inbox}", f"output={out}", "progress=false", "threads=1"]) == 0
    url = review_db(f"sqlite:///{root / 'review.db'}", "Dr C")
    assert review_main(["import", str(out), "--db", url, "--name", "clinic <b>Monday</b>"]) == 0
    ids = {**{p.name: p.stem for p in src[:4]}, HOSTILE: src[4].stem}  # case name → the dataset's image_id
    return {"ds": ds, "out": out, "url": url, "root": root, "ids": ids}


def _case_ids(url: str) -> list[int]:
    with open_db(url)() as s:
        return list(s.scalars(select(Case.id).order_by(Case.rank)))


def test_record_reload_and_reviewers_apart(worklist, tmp_path):
    url = review_db(f"sqlite:///{tmp_path / 'db.sqlite'}", "Dr A", "Dr B")
    assert review_main(["import", str(worklist["out"]), "--db", url]) == 0
    first = _case_ids(url)[0]
    a, ta = client(url, "Dr A")
    b, tb = client(url, "Dr B")
    r = a.post(f"/case/{first}", data={"csrf_token": ta, "bcc": "1", "pattern": ["AT", "ON"], "note": "nests"})
    assert r.status_code == 302 and "Verdict recorded." in a.get(r.headers["Location"]).get_data(as_text=True)
    page = a.get(f"/case/{first}").get_data(as_text=True)
    assert re.search(r'id="bcc-yes" required\s*checked', page)
    assert re.search(r'id="pattern-AT"\s*checked', page) and re.search(r'id="pattern-ON"\s*checked', page)
    assert not re.search(r'id="pattern-PN"\s*checked', page) and 'value="nests"' in page
    assert "checked" not in b.get(f"/case/{first}").get_data(as_text=True)  # B does not see A's verdict
    b.post(f"/case/{first}", data={"csrf_token": tb, "bcc": "0", "pattern": ["PN"]})
    a.post(f"/case/{first}", data={"csrf_token": ta, "bcc": "1", "pattern": ["AT"]})  # A changes their mind
    with open_db(url)() as s:
        got = sorted((v.reviewer.name, v.version, v.bcc, [c for c in CODES if v.patterns[c]], v.note)
                     for v in s.scalars(select(Verdict)))
    assert got == [("Dr A", 1, True, ["ON", "AT"], "nests"), ("Dr A", 2, True, ["AT"], ""),  # the first one kept
                   ("Dr B", 1, False, ["PN"], "")]
    page = a.get(f"/case/{first}").get_data(as_text=True)
    assert "Your BCC verdict differs" not in page and "version 2" in page and "1 earlier version kept" in page
    b.post(f"/case/{first}", data={"csrf_token": tb, "bcc": "1", "pattern": ["PN"]})  # PN vetoes BCC in the rule
    assert 'id="rule-warning"' in b.get(f"/case/{first}").get_data(as_text=True)


def test_pages_escape_what_they_show_and_refuse_foreign_requests(worklist):
    c, token = client(worklist["url"], "Dr <i>X</i>")  # no such account (nor a valid rater name): refused
    page = c.get("/", follow_redirects=True).get_data(as_text=True)
    assert "Dr &lt;i&gt;" not in page and "<i>X" not in page and 'id="sign-in"' in page
    c, token = client(worklist["url"], "Dr C")
    home = c.get("/").get_data(as_text=True)
    assert "clinic &lt;b&gt;Monday&lt;/b&gt;" in home and "<b>Monday" not in home
    with open_db(worklist["url"])() as s:
        hostile = list(s.scalars(select(Case.id).where(Case.image == HOSTILE)))
    assert len(hostile) == 1
    resp = c.get(f"/case/{hostile[0]}")
    page = resp.get_data(as_text=True)
    assert "&lt;img src=x onerror=alert(1)&gt; &#34;lesion&#34; &amp; co.png" in page
    assert "<img src=x" not in page
    csp = resp.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "script-src 'sha256-" in csp and "frame-ancestors 'none'" in csp
    assert c.post(f"/case/{hostile[0]}", data={"bcc": "1"}).status_code == 400  # no form token
    assert c.post(f"/case/{hostile[0]}", data={"csrf_token": token[::-1], "bcc": "1"}).status_code == 400  # a wrong one
    assert c.post(f"/case/{hostile[0]}", data={"csrf_token": token, "bcc": "1", "pattern": ["XX"]}).status_code == 400
    assert c.get("/", headers={"Host": "evil.example:8765"}).status_code == 403  # DNS rebinding
    image = c.get(f"/case/{hostile[0]}/image.jpg")
    assert image.mimetype == "image/jpeg" and b"Exif" not in image.data


def test_verdicts_round_trip_into_consensus(worklist, tmp_path):
    """Dr A's verdicts export as a rater in annotations.csv form, matched to the dataset's image_ids by
    content, after the dataset's own rows; bcc.consensus then weighs Dr A like the simulated raters. Dr A
    agrees with the consensus on four images (so EM learns Dr A is reliable) and is the only one to rate
    code `c` of the fifth (the other raters' cells blanked): its consensus then follows Dr A."""
    url = review_db(f"sqlite:///{tmp_path / 'db.sqlite'}", "Dr A")
    assert review_main(["import", str(worklist["out"]), "--db", url]) == 0
    ds = tmp_path / "ds"
    shutil.copytree(worklist["ds"], ds)
    ids = worklist["ids"]
    labels = pd.read_csv(ds / "labels.csv", dtype={"image_id": str}).set_index("image_id")
    first, *others = sorted(ids.values())
    c = next(k for k in CODES if labels.loc[others, k].nunique() == 2 and labels.loc[first, k] == 0)
    own = pd.read_csv(ds / "annotations.csv", dtype=str, keep_default_na=False)
    own.loc[own.image_id == first, c] = ""  # nobody rated c on the first image
    own.to_csv(ds / "annotations.csv", index=False)
    before = ensure_labels(ds).set_index("image_id")
    a, token = client(url, "Dr A")
    with open_db(url)() as s:
        cases = {cid: ids[name] for cid, name in s.execute(select(Case.id, Case.image))}
    for cid, image_id in cases.items():
        seen = [k for k in CODES if labels.loc[image_id, k] == 1 or (image_id == first and k == c)]
        a.post(f"/case/{cid}", data={"csrf_token": token, "bcc": "1" if labels.loc[image_id, "bcc"] else "0",
                                     "pattern": seen})
    out = tmp_path / "annotations.new.csv"
    assert review_main(["export", "--db", url, "--out", str(out), "--dataset", str(ds)]) == 0
    ann = pd.read_csv(out, dtype=str, keep_default_na=False)
    mine = ann[ann.rater == "Dr A"].set_index("image_id")
    assert len(ann) == len(own) + len(cases) and sorted(mine.index) == sorted(ids.values())
    assert ann.iloc[:len(own)].equals(own)  # the dataset's rows first, untouched
    assert mine.loc[first, c] == "1" and mine.loc[others[0], list(CODES)].astype(int).tolist() == \
        labels.loc[others[0], list(CODES)].astype(int).tolist()
    audit = pd.read_csv(tmp_path / "annotations.new.verdicts.csv")
    assert len(audit) == len(cases) and set(audit.columns) >= {"bcc", "rule_over_codes", "agrees", "version", "keyed_by"}
    assert audit.exported.all() and (audit.keyed_by == "dataset image_id, matched by content sha256").all()
    shutil.copy(out, ds / "annotations.csv")
    after = ensure_labels(ds).set_index("image_id")
    assert "Dr A" in set(pd.read_csv(ds / "rater_quality.csv").rater)
    assert pd.isna(before.loc[[first], [c, f"p_{c}"]]).all().all()  # nobody rated it: no label
    assert after.loc[first, c] == 1 and after.loc[first, f"p_{c}"] > 0.5  # Dr A's word
    assert (after.loc[others, list(CODES)] == labels.loc[others, list(CODES)]).all().all()
    assert review_main(["export", "--db", url, "--out", str(out)]) == 2  # never over an existing file


@pytest.mark.slow
def test_browser_review_record_reload_restart(worklist, tmp_path):
    """In a real browser: sign in, open the first case — image, scores and the eight maps drawn — record a
    verdict, reload: it is there; stop the server, start another on the same database: still there."""
    from selenium.webdriver.common.by import By

    url = review_db(f"sqlite:///{tmp_path / 'db.sqlite'}", "Dr A")
    assert review_main(["import", str(worklist["out"]), "--db", url, "--name", "monday"]) == 0
    with browser(tmp_path / "profile") as d:
        with served(url) as base:
            sign_in(d, base, "Dr A")
            d.find_element(By.LINK_TEXT, "monday").click()
            d.find_elements(By.CSS_SELECTOR, "#cases a")[0].click()
            case_url = d.current_url
            assert d.find_element(By.ID, "diagnosis").text in ("BCC", "non-BCC")
            assert d.execute_script("return document.querySelector('img.lesion').naturalWidth") > 0
            assert d.find_element(By.CSS_SELECTOR, "div.maps").get_attribute("data-drawn") == "true"
            sizes = d.execute_script("""return [...document.querySelectorAll('figure canvas')].map(c => {
                const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                let lo = 255, hi = 0; for (const v of px) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
                return [c.width, hi - lo]; })""")
            assert len(sizes) == 8 and all(w == 160 and spread > 0 for w, spread in sizes)
            d.find_element(By.ID, "bcc-yes").click()
            d.find_element(By.ID, "pattern-AT").click()
            d.find_element(By.ID, "note").send_keys("arborizing vessels <b>")
            record(d)
            assert d.find_element(By.CSS_SELECTOR, ".flash.saved").text == "Verdict recorded."
            d.get(case_url)
            d.refresh()
            assert d.find_element(By.ID, "bcc-yes").is_selected() and d.find_element(By.ID, "pattern-AT").is_selected()
            assert not d.find_element(By.ID, "pattern-PN").is_selected()
            assert d.find_element(By.ID, "note").get_attribute("value") == "arborizing vessels <b>"
        with served(url) as base:  # a new server on the same database; the browser's session is gone
            sign_in(d, base, "Dr A")
            d.get(base + urlparse(case_url).path)
            assert d.find_element(By.ID, "bcc-yes").is_selected() and d.find_element(By.ID, "pattern-AT").is_selected()


@pytest.mark.slow
def test_two_reviewers_at_once(worklist, tmp_path):
    """Two browsers, two reviewers, recording every case of the worklist at the same time: every verdict of
    both is in the database, each reviewer's own."""
    from selenium.webdriver.common.by import By

    url = review_db(f"sqlite:///{tmp_path / 'db.sqlite'}", "Dr A", "Dr B")
    assert review_main(["import", str(worklist["out"]), "--db", url]) == 0
    cases = _case_ids(url)
    errors = []

    def review(name: str, bcc: bool, code: str, base: str) -> None:
        try:
            with browser(tmp_path / f"profile-{name}") as d:
                sign_in(d, base, name)
                d.get(f"{base}/case/{cases[0]}")
                for _ in cases:
                    d.find_element(By.ID, "bcc-yes" if bcc else "bcc-no").click()
                    d.find_element(By.ID, f"pattern-{code}").click()
                    record(d)
        except Exception:  # noqa: BLE001 — reported by the main thread, with where it was raised
            errors.append(f"{name}: {traceback.format_exc()}")

    with served(url) as base:
        threads = [threading.Thread(target=review, args=(*args, base))
                   for args in (("Dr A", True, "AT"), ("Dr B", False, "PN"))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
    assert not errors, errors
    with open_db(url)() as s:
        got = sorted((v.case_id, v.reviewer.name, v.bcc, v.patterns["AT"], v.patterns["PN"])
                     for v in s.scalars(select(Verdict)))
    assert got == sorted([(c, "Dr A", True, 1, 0) for c in cases] + [(c, "Dr B", False, 0, 1) for c in cases])


@pytest.mark.slow
def test_maps_drawn_by_the_page_equal_the_python_pipeline(worklist, tmp_path):
    """bccHeat (the page's script) against bcc.explanation.gradcam.postprocess + the jet table, on the
    worklist's own raw maps (1 x 1 at the smoke model's 32 px) and on random 7 x 7 and 3 x 5 ones, at two
    sizes: within one step of the colour table."""
    url = review_db(f"sqlite:///{tmp_path / 'db.sqlite'}", "Dr A")
    assert review_main(["import", str(worklist["out"]), "--db", url]) == 0
    cams = np.load(worklist["out"] / "maps.npy")
    rng = np.random.default_rng(0)
    cams = [*cams[:2], rng.normal(size=(8, 7, 7)).astype(np.float32), rng.normal(size=(8, 3, 5)).astype(np.float32)]

    with browser(tmp_path / "profile") as d, served(url) as base:
        sign_in(d, base, "Dr A")
        d.get(f"{base}/case/{_case_ids(url)[0]}")  # a page with the maps' script
        for stack in cams:
            for k in (0, 5):
                for hw in ((160, 160), (120, 160)):
                    got = np.array(d.execute_script("return Array.from(bccHeat(arguments[0], arguments[1], "
                                                    "arguments[2]))", stack[k].tolist(), *hw)).reshape(*hw, 3)
                    want = heat_rgb(postprocess(torch.from_numpy(stack[None, k:k + 1]), hw)[0, 0].numpy()) * 255
                    diff = np.abs(got - want)
                    assert diff.mean() < 0.5 and diff.max() <= 6, (k, hw, diff.mean(), diff.max())


def test_import_refuses_a_folder_without_a_triage_run(tmp_path, capsys):
    assert review_main(["import", str(tmp_path), "--db", f"sqlite:///{tmp_path / 'x.db'}"]) == 2
    assert "run.json: missing; import the output= folder of a `python -m bcc.predict` run" in capsys.readouterr().err


def test_a_database_url_that_cannot_be_opened(tmp_path, capsys):
    assert review_main(["serve", "--db", "nosuchdb://x"]) == 2
    assert "--db nosuchdb://x: not a database URL SQLAlchemy can open" in capsys.readouterr().err
    assert review_main(["serve", "--db", f"sqlite:///{tmp_path}/no/such/dir/x.db"]) == 2
    assert "no review database there (a mistyped path?)" in capsys.readouterr().err


def test_the_server_binds_to_localhost_only(tmp_path, monkeypatch):
    """`serve` opens its socket on 127.0.0.1 whatever else the machine has; a port in use is a usage error."""
    asked = {}

    class Fake:
        effective_port = 9

        def run(self):
            asked["ran"] = True

    def fake(app, host, port, threads):
        asked.update(host=host, port=port)
        return Fake()

    monkeypatch.setattr("bcc.review.__main__.create_server", fake)
    url = review_db(f"sqlite:///{tmp_path / 'x.db'}")
    assert review_main(["serve", "--db", url, "--port", "8123"]) == 0
    assert asked == {"host": "127.0.0.1", "port": 8123, "ran": True}


@pytest.mark.slow
def test_the_page_places_a_map_on_the_networks_view(tmp_path):
    """A model that crops (``resize=crop``) saw the centre square of a 4:3 picture: report.html draws each map
    there, and the map's 0 colour (jet's first) over the strips the network never saw — as
    ``maps_on_picture`` places it."""
    from bcc.deploy.report_html import CARD_SIDE, lesion_figures, write_report
    from bcc.deploy.thresholds import Thresholds
    from bcc.deploy.triage import Lesion, worklist
    from bcc.explanation.render import JET_RGB

    grey = np.full((120, 160, 3), 128, np.uint8)  # 4:3, one flat colour: the blend is known exactly
    cams = np.zeros((8, 2, 2), np.float32)
    cams[:, 1, 1] = 1.0  # every map hot in its bottom-right cell
    les = Lesion("wide.png", "", probs=np.full(8, 0.5), figures=lesion_figures(grey), cams=cams,
                 view=(0.125, 0.0, 0.875, 1.0))
    table, lesions = worklist([les], Thresholds())
    write_report(tmp_path / "report.html", table, lesions, {"thresholds": Thresholds().as_dict()})
    with browser(tmp_path / "profile") as d:
        d.get((tmp_path / "report.html").as_uri())
        px = np.array(d.execute_script(
            "const c = document.querySelector('figure[data-output=bcc] canvas');"
            "return [c.width, c.height, Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data)]"),
            dtype=object)
    w, h = int(px[0]), int(px[1])
    rgba = np.array(px[2], dtype=float).reshape(h, w, 4)
    assert (w, h) == (160, 120) and CARD_SIDE >= 160
    outside = np.floor(0.5 * JET_RGB[0] * 255 + 0.5 * 128 + 0.5)
    np.testing.assert_allclose(rgba[:, :15, :3], np.broadcast_to(outside, (h, 15, 3)), atol=1)   # left strip
    np.testing.assert_allclose(rgba[:, -15:, :3], np.broadcast_to(outside, (h, 15, 3)), atol=1)  # right strip
    hot = np.floor(0.5 * JET_RGB[-1] * 255 + 0.5 * 128 + 0.5)
    np.testing.assert_allclose(rgba[-1, 139, :3], hot, atol=1)  # the view's bottom-right corner: the map's 1
