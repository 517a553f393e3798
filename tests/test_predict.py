"""bcc.predict (bcc.deploy.triage) and its report.html: the ranked worklist, review flags, bad inputs skipped
with their reason, formula-leading cells neutralised, metadata stripping, atomic writes, and the HTML
report rendered in a real headless browser. Inputs refused outright (exit 2) are rows of the bad-input
table (tests/bad_inputs/cases_deploy.py).

One smoke checkpoint (stage 0, fold 0 of the session's synthetic set) is trained per module, and one
predict run over a folder of good and bad inputs is shared by the tests that only read its outputs.
"""
from __future__ import annotations

import base64
import csv
import io
import json
import os
import re
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from bcc.cli.predict import main
from bcc.core.errors import BadInput
from bcc.core.io import FORMULA_START, csv_safe
from bcc.core.patterns import CODES
from bcc.data.images import read_image
from bcc.deploy.thresholds import Thresholds, load_thresholds
from bcc.deploy.triage import COLUMNS, verdicts
from bcc.models.checkpoint import load_network

SECRET = "Jane Doe 1970-01-01"  # written into EXIF / PNG text / JPEG comment: must never reach the report


# ---- fixtures -------------------------------------------------------------------------------------------
pytestmark = pytest.mark.usefixtures("one_thread")


def _png_header_only(path: Path, w: int, h: int) -> None:
    """A PNG whose header claims w x h pixels (a decompression bomb's header) with a tiny body."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))


def _exif_bytes(orientation: int | None = None) -> bytes:
    exif = Image.Exif()
    exif[0x010E] = SECRET          # ImageDescription
    exif[0x013B] = SECRET          # Artist
    if orientation:
        exif[0x0112] = orientation
    gps = exif.get_ifd(0x8825)     # GPSInfo
    gps[1], gps[2] = "N", (51.0, 30.0, 12.0)
    return exif.tobytes()


#: file name → (expected status, a piece of the expected note)
EXPECTED = {
    "good_0.png": ("ok", "PNG RGB"),
    "good_1.png": ("ok", "PNG RGB"),
    "good_2.png": ("ok", "PNG RGB"),
    "sub/good_3.png": ("ok", "PNG RGB"),
    "exif.jpg": ("ok", "JPEG RGB"),
    "rotated.jpg": ("ok", "EXIF orientation applied"),
    "text_chunk.png": ("ok", "PNG RGB"),
    "cmyk.jpg": ("ok", "CMYK converted to RGB"),
    "grey.png": ("ok", "greyscale"),
    "grey16.png": ("ok", "16-bit greyscale scaled to 8-bit"),
    "green8.png": ("ok", "greyscale"),
    "rgb16.png": ("ok", "PNG RGB"),
    "rgba.png": ("ok", "alpha dropped"),
    "big.jpg": ("ok", "3000x2400 reduced to 1024x819 for the report"),
    "notes.txt": ("skipped", "not an image"),
    "empty.jpg": ("skipped", "empty file (0 bytes)"),
    "corrupt.png": ("skipped", "corrupt PNG image"),
    "truncated.jpg": ("skipped", "corrupt or truncated"),
    "huge.png": ("skipped", "image too large"),
    "tiny.png": ("skipped", "image too small"),
    "l\\xe9sion.png": ("ok", "file name shown escaped (bytes that are not UTF-8 as \\xNN"),
    "broken.png": ("skipped", "a broken link"),
    "linked": ("skipped", "a link to a folder (links to folders are not followed"),
    "fifo.png": ("skipped", "not a regular file (a FIFO, socket or device; not opened)"),
}


@pytest.fixture(scope="module")
def lesions(data_dir, tmp_path_factory) -> Path:
    """A folder as a clinic would send it: dataset images plus every kind of bad or unusual input."""
    src = sorted((data_dir / "synthetic-smoke" / "images").glob("*.png"))
    d = tmp_path_factory.mktemp("lesions")
    (d / "sub").mkdir()
    for i, name in enumerate(["good_0.png", "good_1.png", "good_2.png", "sub/good_3.png"]):
        shutil.copy(src[i], d / name)
    rgb = np.asarray(Image.open(src[4]).convert("RGB"))
    im = Image.fromarray(rgb)
    from PIL import ImageCms

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    im.save(d / "exif.jpg", "JPEG", quality=95, exif=_exif_bytes(), icc_profile=icc, comment=SECRET.encode())
    Image.fromarray(rgb[:, :32]).save(d / "rotated.jpg", "JPEG", quality=95, exif=_exif_bytes(orientation=6))
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("Patient", SECRET)
    im.save(d / "text_chunk.png", pnginfo=info)
    im.convert("CMYK").save(d / "cmyk.jpg", "JPEG", quality=95)
    im.convert("L").save(d / "grey.png")
    Image.fromarray(rgb[..., 1].astype(np.uint16) * 257).save(d / "grey16.png")  # mode I;16
    Image.fromarray(rgb[..., 1]).save(d / "green8.png")                              # the same, 8-bit
    import cv2

    cv2.imwrite(str(d / "rgb16.png"), (rgb[..., ::-1].astype(np.uint16) * 257))     # 16-bit RGB PNG
    Image.fromarray(np.dstack([rgb, np.full(rgb.shape[:2], 200, np.uint8)])).save(d / "rgba.png")
    big = Image.fromarray(rgb).resize((3000, 2400), Image.Resampling.BILINEAR)
    big.save(d / "big.jpg", "JPEG", quality=80)
    (d / "notes.txt").write_text("referral letter, not an image\n")
    (d / "empty.jpg").write_bytes(b"")
    (d / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(2000))
    full = io.BytesIO()
    Image.fromarray(rgb).resize((256, 256)).save(full, "JPEG", quality=95)
    (d / "truncated.jpg").write_bytes(full.getvalue()[: len(full.getvalue()) // 2])
    _png_header_only(d / "huge.png", 40000, 40000)
    Image.fromarray(rgb[:4, :4]).save(d / "tiny.png")
    shutil.copy(src[5], d / ".hidden.png")  # hidden files are not inputs
    shutil.copy(src[0], os.fsencode(d) + b"/l\xe9sion.png")  # Latin-1 bytes in a name: not UTF-8
    (d / "broken.png").symlink_to(d / "gone.png")
    (d / "linked").symlink_to(d / "sub", target_is_directory=True)
    os.mkfifo(d / "fifo.png")  # opening it would wait forever for a writer
    return d


@pytest.fixture(scope="module")
def predicted(ckpt, lesions, tmp_path_factory):
    """One CLI run over the lesion folder with explanations and the report: (output dir, triage table, log)."""
    out = tmp_path_factory.mktemp("triage")
    assert main([f"checkpoint={ckpt}", f"input={lesions}", f"output={out}", "progress=false", "threads=1"]) == 0
    table = pd.read_csv(out / "triage.csv", keep_default_na=False, na_values=[""])
    return out, table


# ---- the worklist ---------------------------------------------------------------------------------------
def test_triage_csv_ranked_with_all_columns(predicted, ckpt, lesions):
    _, t = predicted
    assert list(t.columns) == COLUMNS
    ok, skipped = t[t.status == "ok"], t[t.status == "skipped"]
    assert list(t.status) == ["ok"] * len(ok) + ["skipped"] * len(skipped)  # skipped rows come last
    assert list(ok["rank"]) == list(range(1, len(ok) + 1))
    assert skipped["rank"].isna().all() and skipped["p_bcc"].isna().all()
    assert (np.diff(ok["p_bcc"].to_numpy()) <= 0).all(), "worklist must be ranked by p_bcc, highest first"
    # scores are the network's own: recompute four of them with plain torch
    net = load_network(ckpt, channels_last=False)
    for name in ["good_0.png", "sub/good_3.png", "grey.png", "cmyk.jpg"]:
        x, _ = read_image(lesions / name, net.image_size)
        with torch.inference_mode():
            p = torch.sigmoid(net(x[None]))[0].numpy()
        row = ok.set_index("image").loc[name]
        assert row.p_bcc == pytest.approx(p[0], abs=1e-4)
        assert [row[f"p_{c}"] for c in CODES] == pytest.approx(list(p[1:]), abs=1e-4)
        if name == "good_0.png":  # its copy under a non-UTF-8 name is scored, not lost
            assert ok.set_index("image").loc["l\\xe9sion.png"].p_bcc == row.p_bcc


def test_verdicts_and_review_flags_follow_the_rule(predicted):
    """Every row's verdicts and review flag recomputed from its probabilities (default thresholds 0.5, band 0.1)."""
    _, t = predicted
    ok = t[t.status == "ok"]
    for _, r in ok.iterrows():
        p = {c: r[f"p_{c}"] for c in CODES}
        diag = "BCC" if r.p_bcc >= 0.5 else "non-BCC"
        rule = "BCC" if p["PN"] < 0.5 and any(p[c] >= 0.5 for c in CODES if c != "PN") else "non-BCC"
        assert (r.diagnosis_verdict, r.rule_verdict) == (diag, rule)
        assert r.review == int(diag != rule or abs(r.p_bcc - 0.5) < 0.1)
        detected = {s.split()[0]: float(s.split()[1]) for s in (r.patterns if isinstance(r.patterns, str) else "").split("; ") if s.strip()}
        assert set(detected) == {c for c in CODES if p[c] >= 0.5}
        assert list(detected.values()) == sorted(detected.values(), reverse=True)
        if r.review:
            assert ("clinical rule" in r.review_reason) == (diag != rule)
            assert ("within 0.10 of the operating threshold" in r.review_reason) == (abs(r.p_bcc - 0.5) < 0.1)


def test_verdicts_unit_cases():
    def probs(bcc, **codes):
        return [bcc] + [codes.get(c, 0.05) for c in CODES]

    th = Thresholds()  # 0.5 everywhere, band 0.1
    v = verdicts(np.array([probs(0.9, AT=0.8),            # agree BCC, clear of the band
                           probs(0.9),                     # head BCC, no pattern: rule non-BCC
                           probs(0.55, AT=0.8),            # agree, but inside the band
                           probs(0.1, PN=0.9, AT=0.9),     # PN vetoes AT: both non-BCC
                           probs(0.2, U=0.7, ON=0.6)]), th)
    assert list(v.diagnosis_verdict) == ["BCC", "BCC", "BCC", "non-BCC", "non-BCC"]
    assert list(v.rule_verdict) == ["BCC", "non-BCC", "BCC", "non-BCC", "BCC"]
    assert list(v.review) == [0, 1, 1, 0, 1]
    assert v.review_reason[1] == ["diagnosis head says BCC but the clinical rule over the patterns says non-BCC"]
    assert v.review_reason[2] == ["p_bcc 0.55 is within 0.10 of the operating threshold 0.50"]  # a list, never joined
    assert v.patterns[3] == "PN 0.90; AT 0.90" and v.patterns[4] == "U 0.70; ON 0.60"
    # a lower operating point and no band: the third case is then clear
    th2 = Thresholds().update({"bcc": 0.3, "uncertainty_band": 0.0, "patterns": {"U": 0.8}}, "test")
    v2 = verdicts(np.array([probs(0.55, AT=0.8), probs(0.35, U=0.7, ON=0.6)]), th2)
    assert list(v2.review) == [0, 0] and list(v2.diagnosis_verdict) == ["BCC", "BCC"]
    assert v2.patterns[1] == "ON 0.60"  # U 0.7 is below its own threshold 0.8 now


def test_thresholds_precedence_and_errors(ckpt, tmp_path):
    raw = torch.load(ckpt, map_location="cpu", weights_only=True)
    raw["thresholds"] = {"bcc": 0.3, "patterns": {"AT": 0.6}, "uncertainty_band": 0.2, "source": "eval"}
    model = tmp_path / "m.ckpt"
    torch.save(raw, model)
    (tmp_path / "thresholds.json").write_text(json.dumps({"uncertainty_band": 0.05}))
    extra = tmp_path / "site.json"
    extra.write_text(json.dumps({"patterns": {"SW": 0.7}}))
    th = load_thresholds(model, extra, {"bcc": 0.4, "patterns": {"PN": 0.45}})
    assert th.bcc == 0.4 and th.band == 0.05
    assert th.patterns == {**{c: 0.5 for c in CODES}, "AT": 0.6, "SW": 0.7, "PN": 0.45}
    assert "m.ckpt metadata (eval)" in th.source and "command line" in th.source
    extra.write_text(json.dumps({"bcc": 1.5}))
    with pytest.raises(BadInput, match=r"site\.json: bcc = 1\.5 is not in \[0, 1\]"):
        load_thresholds(model, extra)
    extra.write_text("{not json")
    with pytest.raises(BadInput, match=r"site\.json: not valid JSON"):
        load_thresholds(model, extra)
    with pytest.raises(BadInput, match="unknown pattern code 'XX'"):
        load_thresholds(model, None, {"patterns": {"XX": 0.5}})


def test_threshold_override_changes_the_worklist(ckpt, lesions, tmp_path):
    args = [f"checkpoint={ckpt}", f"input={lesions / 'sub'}", "explain=false", "report=false", "progress=false", "threads=1"]
    assert main([*args, f"output={tmp_path / 'low'}", "threshold=0.0", "band=0"]) == 0
    assert main([*args, f"output={tmp_path / 'high'}", "threshold=1.0", "pattern_threshold=1.0"]) == 0
    low = pd.read_csv(tmp_path / "low" / "triage.csv")
    high = pd.read_csv(tmp_path / "high" / "triage.csv", keep_default_na=False)
    assert (low.diagnosis_verdict == "BCC").all()
    assert (high.diagnosis_verdict == "non-BCC").all() and (high.patterns == "").all()


def test_progress_bar_on_request(ckpt, lesions, tmp_path, capsys):
    assert main([f"checkpoint={ckpt}", f"input={lesions / 'sub'}", f"output={tmp_path}", "explain=false",
                 "report=false", "progress=true", "threads=1"]) == 0
    err = capsys.readouterr().err
    assert "bcc.predict: 100%" in err and "1/1" in err


# ---- bad inputs and metadata ------------------------------------------------------------------------------
def test_every_bad_input_is_processed_or_skipped_with_its_reason(predicted):
    out, t = predicted
    got = {r.image: (r.status, r.note) for r in t.itertuples()}
    assert set(got) == set(EXPECTED), "hidden files must be ignored, every other file listed"
    for name, (status, note) in EXPECTED.items():
        assert got[name][0] == status, (name, got[name])
        assert note in got[name][1], (name, got[name])
    # decoded correctly: the same pixels in another container give the same scores
    p = t.set_index("image")[[f"p_{o}" for o in ("bcc", *CODES)]]
    for same in (["text_chunk.png", "rgb16.png", "rgba.png"], ["green8.png", "grey16.png"]):
        np.testing.assert_allclose(p.loc[same].to_numpy(), np.repeat(p.loc[same[:1]].to_numpy(), len(same), 0),
                                   atol=1e-4, err_msg=str(same))
    html = (out / "report.html").read_text()
    for name, (status, _) in EXPECTED.items():
        if status == "skipped":
            assert re.search(rf"<li><b>{re.escape(name)}</b>: [^<]+</li>", html), name


def _data_uris(html: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/(?:jpeg|png);base64,([^"]+)"', html)]


def test_report_images_carry_no_metadata(predicted):
    out, t = predicted
    html = (out / "report.html").read_text()
    blobs = _data_uris(html)
    assert len(blobs) >= (t.status == "ok").sum()
    assert SECRET not in html
    for blob in blobs:
        assert SECRET.encode() not in blob and b"Exif" not in blob and b"ICC_PROFILE" not in blob
        with Image.open(io.BytesIO(blob)) as im:
            assert len(im.getexif()) == 0
            assert not {"exif", "icc_profile", "comment", "Patient", "xmp"} & set(im.info)


def test_exif_orientation_is_applied(predicted):
    """rotated.jpg is stored 32 wide x 64 high with EXIF orientation 6 (rotate 90°): it is shown 64 wide x 32 high."""
    out, _ = predicted
    html = (out / "report.html").read_text()
    card = re.search(r'<img class="lesion" alt="rotated.jpg" src="data:image/jpeg;base64,([^"]+)"', html)
    with Image.open(io.BytesIO(base64.b64decode(card.group(1)))) as im:
        assert im.width > im.height


# ---- hostile file names, folders ---------------------------------------------------------------------------
FORMULA_NAMES = ['=HYPERLINK("evil.example?x=1","open").png', "+1.png", "-2.png", "@SUM(A1).png",
                 "\tlesion.png", "\rlesion.png"]


def test_formula_leading_file_names_are_neutralised(ckpt, data_dir, tmp_path):
    """OWASP's CSV-injection rule on triage.csv: every cell starting with = + - @ gets a leading ', scored
    and skipped rows alike; a tab or carriage return in a file name is shown escaped (a raw CR would end
    the row); the probabilities stay plain numbers."""
    src = min((data_dir / "synthetic-smoke" / "images").glob("*.png"))
    d = tmp_path / "in"
    d.mkdir()
    for name in FORMULA_NAMES:
        shutil.copy(src, d / name)
    (d / "=cmd.txt").write_text("not an image")
    out = tmp_path / "out"
    assert main([f"checkpoint={ckpt}", f"input={d}", f"output={out}", "progress=false", "threads=1"]) == 0
    with open(out / "triage.csv", newline="", encoding="utf-8") as f:
        header, *rows = list(csv.reader(f))
    col = {c: header.index(c) for c in header}
    assert sorted(r[col["image"]] for r in rows) == sorted(["'" + n for n in FORMULA_NAMES[:4]] + [
        "\\tlesion.png", "\\rlesion.png", "'=cmd.txt"])
    assert not [cell for r in rows for cell in r if cell.startswith(FORMULA_START)]
    ok = [r for r in rows if r[col["status"]] == "ok"]
    assert len(ok) == len(FORMULA_NAMES) and int(ok[0][col["rank"]]) == 1
    assert all(0 <= float(r[col[c]]) <= 1 for r in ok for c in ["p_bcc", *[f"p_{c}" for c in CODES]])
    assert pd.read_csv(out / "triage.csv")["p_bcc"].dtype == np.float64
    html = (out / "report.html").read_text()
    assert "=HYPERLINK(&#34;evil.example?x=1&#34;,&#34;open&#34;).png" in html  # escaped, not altered


def test_csv_safe_leaves_numbers_alone():
    t = pd.DataFrame({"name": ["=1+1", "+a", "-b", "@c", "\td", "\re", "ok", "a=b", None],
                      "mixed": [-1, "-x", 2.5, "=y", "z", 0, -3.5, "", None],
                      "p": [-0.5, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]})
    safe = csv_safe(t)
    assert list(safe["name"][:8]) == ["'=1+1", "'+a", "'-b", "'@c", "'\td", "'\re", "ok", "a=b"]
    assert list(safe["mixed"][:8]) == [-1, "'-x", 2.5, "'=y", "z", 0, -3.5, ""]
    assert safe["name"].isna()[8] and safe["mixed"].isna()[8]  # a missing cell stays missing
    assert safe["p"].equals(t["p"]) and t["name"][0] == "=1+1"  # a copy; the input is untouched


def test_output_folder_may_hold_the_input_folder(ckpt, lesions, tmp_path):
    """input= inside output= (or an input file beside output=) is allowed: nothing is written into the input
    folder. output= being input= or inside it is refused (the bad-input table)."""
    work = tmp_path / "work"
    shutil.copytree(lesions / "sub", work / "photos")
    args = ["explain=false", "progress=false", "threads=1", f"checkpoint={ckpt}"]
    assert main([*args, f"input={work / 'photos'}", f"output={work}"]) == 0
    assert sorted(p.name for p in work.iterdir()) == [".bcc-predict.json", "photos", "report.html", "run.json",
                                                      "triage.csv"]
    assert [p.name for p in (work / "photos").iterdir()] == ["good_3.png"]
    assert main([*args, f"input={work / 'photos' / 'good_3.png'}", f"output={work / 'photos'}"]) == 0
    assert pd.read_csv(work / "photos" / "triage.csv").image.tolist() == ["good_3.png"]


def test_outputs_are_replaced_atomically(ckpt, lesions, tmp_path, monkeypatch, capsys):
    """A second run into the same output= replaces the first's outputs only with overwrite=true; one that fails
    while writing the report leaves the previous triage.csv and report whole and no temporary file; a
    temporary left by a killed run (its process gone) is cleared by the next run."""
    args = [f"checkpoint={ckpt}", f"input={lesions / 'sub'}", f"output={tmp_path}", "explain=false",
            "progress=false", "threads=1"]
    assert main(args) == 0
    before = {n: (tmp_path / n).read_bytes() for n in ("report.html", "triage.csv")}
    assert main(args) == 2 and "from an earlier run of bcc.predict" in capsys.readouterr().err

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr("bcc.deploy.report_html.render_html", broken)
    (tmp_path / ".bcc-predict.tmp-999999999-killed").mkdir()  # no such pid: a SIGKILLed run's staging
    assert main([*args, "overwrite=true"]) == 1  # a failure while running
    assert "disk full" in capsys.readouterr().err
    assert {n: (tmp_path / n).read_bytes() for n in before} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [".bcc-predict.json", "report.html", "run.json", "triage.csv"]
    monkeypatch.undo()
    assert main([*args, "overwrite=true", "report=false"]) == 0  # the earlier report.html goes with its run
    assert sorted(p.name for p in tmp_path.iterdir()) == [".bcc-predict.json", "run.json", "triage.csv"]


# ---- the report in a real browser ----------------------------------------------------------------------
def _browser() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def test_report_renders_in_headless_browser(predicted, tmp_path):
    browser = _browser()
    if browser is None:
        pytest.skip("no chromium installed (.ci/run installs Debian's)")
    out, t = predicted
    url = (out / "report.html").resolve().as_uri()
    base = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1200,2000"]
    shot = tmp_path / "report.png"
    subprocess.run([*base, f"--screenshot={shot}", url], check=True, capture_output=True, timeout=120)
    dom = subprocess.run([*base, "--dump-dom", url], check=True, capture_output=True, timeout=120, text=True).stdout
    n_ok = int((t.status == "ok").sum())
    assert len(re.findall(r'<section class="card[^"]*" data-rank="\d+"', dom)) == n_ok
    ranks = [int(r) for r in re.findall(r'data-rank="(\d+)"', dom)]
    assert ranks == list(range(1, n_ok + 1)), "cards in worklist order"
    # the page drew every card's eight maps from the raw arrays: its script ran under the report's own CSP
    assert len(re.findall(r'<div class="cams maps"[^>]*data-drawn="true"', dom)) == n_ok
    assert len(re.findall(r"<canvas[^>]*width=\"\d+\"", dom)) == 8 * n_ok
    summary = re.search(r'id="summary">(.*?)</div></div>', dom).group(1)
    assert f"<b>{n_ok}</b>scored" in summary
    assert f"<b>{int((t.review == 1).sum())}</b>flagged for review" in summary
    assert f"<b>{int((t.diagnosis_verdict == 'BCC').sum())}</b>likely BCC" in summary
    with Image.open(shot) as im:
        px = np.asarray(im.convert("RGB"))
    assert px.shape[:2] == (2000, 1200)
    assert len(np.unique(px.reshape(-1, 3), axis=0)) > 200, "screenshot is blank"
    assert px[:80].mean() < 100, "the dark header band is drawn at the top"


def test_images_far_larger_than_the_model_input_are_said(ckpt, data_dir, tmp_path, capsys):
    """A 1024 px photograph on the 32 px smoke model is scored, with a note and a warning that its fine detail
    is lost, and report.html states the model's input size."""
    src = min((data_dir / "synthetic-smoke" / "images").glob("*.png"))
    d = tmp_path / "in"
    d.mkdir()
    Image.open(src).convert("RGB").resize((1024, 1024)).save(d / "photo.jpg", "JPEG")
    out = tmp_path / "out"
    assert main([f"checkpoint={ckpt}", f"input={d}", f"output={out}", "progress=false", "threads=1"]) == 0
    assert "1 image(s) are 8x or more larger than the model's 32 px input" in capsys.readouterr().out
    note = pd.read_csv(out / "triage.csv")["note"][0]
    assert "1024x1024 scored at the model's 32x32 px input (32x smaller" in note
    assert "Model input: 32 px" in (out / "report.html").read_text()


@pytest.mark.parametrize("command", ["predict", "explain", "export"])
def test_a_deploy_commands_help_lists_its_own_options(command, capsys):
    """--help shows each option of conf/<command>.yaml with its comment, and none of the training tree's
    config groups (backbone, stage, ...), which these commands do not read."""
    import importlib

    from omegaconf import OmegaConf

    from bcc.core.config import CONF_DIR

    assert importlib.import_module(f"bcc.cli.{command}").main(["--help"]) == 0
    out = capsys.readouterr().out
    conf = CONF_DIR / f"{command}.yaml"
    for key in (str(k) for k in OmegaConf.load(conf) if k not in ("defaults", "hydra")):
        line = next(x for x in conf.read_text().splitlines() if x.startswith(f"{key}:"))
        assert line in out.splitlines()
    assert "Configuration groups" not in out and not re.search(r"^(backbone|stage|trainer): ", out, re.MULTILINE)
