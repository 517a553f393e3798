"""Tests for the embedded synthetic dataset generator (bcc.data.synthetic)."""
from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest

from bcc.core.patterns import BCC_CODES, CODES, clinical_rule
from bcc.data.synthetic import __main__ as cli
from bcc.data.synthetic import labels, patterns, rendering, writer
from bcc.data.synthetic import raters as rater_model

N, SIZE = 96, 64


def _rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="") as f:
        r = csv.DictReader(f)
        return list(r.fieldnames or []), list(r)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def ds(tmp_path_factory) -> Path:
    return writer.generate(tmp_path_factory.mktemp("a") / "ds", n=N, size=SIZE, seed=0, progress=False)


def _truth(ds: Path) -> tuple[list[str], np.ndarray]:
    _, rows = _rows(ds / "truth.csv")
    return [r["image_id"] for r in rows], np.array([[int(r[c]) for c in CODES] for r in rows])


def test_determinism(ds, tmp_path):
    again = writer.generate(tmp_path / "again", n=N, size=SIZE, seed=0, progress=False)
    a, b = _files(ds), _files(again)
    assert a.keys() == b.keys()
    assert all(a[k] == b[k] for k in a)
    other = _files(writer.generate(tmp_path / "other", n=8, size=SIZE, seed=1, progress=False))
    assert other["images/syn_00000.png"] != a["images/syn_00000.png"]
    t0, t1 = (labels.sample_truth(N, labels.global_rng(seed, N, 0)) for seed in (0, 1))
    assert not np.array_equal(t0, t1)


def test_workers_do_not_change_output(tmp_path):
    one = _files(writer.generate(tmp_path / "w1", n=12, size=48, seed=3, progress=False, workers=1))
    two = _files(writer.generate(tmp_path / "w2", n=12, size=48, seed=3, progress=False, workers=2))
    assert one == two


def test_files_and_columns(ds):
    assert {p.name for p in ds.iterdir()} == {"images.csv", "annotations.csv", "truth.csv", "raters.csv",
                                             "images", "masks"}
    cols, images = _rows(ds / "images.csv")
    assert cols == ["image_id", "image", "source"]
    assert len(images) == N and len({r["image_id"] for r in images}) == N
    sources = {r["source"] for r in images}
    assert sources <= set(labels.CENTRES) | {"isic"} and len(sources) >= 3
    for r in images:
        assert r["image"] == f"images/{r['image_id']}.png"
        im = cv2.imread(str(ds / r["image"]))
        assert im is not None and im.shape == (SIZE, SIZE, 3)

    cols, ann = _rows(ds / "annotations.csv")
    assert cols == ["image_id", "rater", *CODES]
    assert len(ann) == 4 * N
    assert {r["rater"] for r in ann} == set(rater_model.RATER_NAMES)
    assert all(r[c] in ("", "0", "1") for r in ann for c in CODES)

    cols, truth = _rows(ds / "truth.csv")
    assert cols == ["image_id", *CODES] and [r["image_id"] for r in truth] == [r["image_id"] for r in images]

    cols, raters = _rows(ds / "raters.csv")
    assert cols == ["rater", "code", "sensitivity", "specificity"]
    assert len(raters) == 4 * len(CODES)
    q = {(r["rater"], r["code"]): (float(r["sensitivity"]), float(r["specificity"])) for r in raters}
    for c in CODES:  # derm_4 is clearly worse than everyone else, on every code
        assert max(q[("derm_4", c)]) <= 0.76
        assert min(min(q[(r, c)]) for r in ("derm_1", "derm_2", "derm_3")) >= 0.85


def test_prevalence_exact_at_paper_size():
    truth = labels.sample_truth(1559, labels.global_rng(0, 1559, 0))
    counts = dict(zip(CODES, truth.sum(0).tolist()))
    assert counts == labels.PAPER_COUNTS
    bcc = clinical_rule(truth)
    assert bcc.sum() == 775 and (truth.sum(1) == 0).sum() == 784 - 557


@pytest.mark.parametrize("n", [7, 60, 333])
def test_prevalence_scaled_and_rules(n):
    truth = labels.sample_truth(n, np.random.default_rng(n))
    k = labels.scaled_counts(n)
    bcc = clinical_rule(truth)
    assert bcc.sum() == k["bcc"]
    pn = truth[:, CODES.index("PN")] == 1
    bcc_pat = truth[:, [CODES.index(c) for c in BCC_CODES]]
    assert not (pn & (bcc_pat.sum(1) > 0)).any()  # PN never with a BCC pattern
    assert (bcc_pat[bcc == 1].sum(1) >= 1).all()  # every BCC image has a BCC pattern
    for c in CODES:
        assert abs(int(truth[:, CODES.index(c)].sum()) - n * labels.PAPER_COUNTS[c] / 1559) <= 1.5


def test_dataset_labels(ds):
    _, truth = _truth(ds)
    k = labels.scaled_counts(N)
    assert clinical_rule(truth).sum() == k["bcc"]
    assert not ((truth[:, 0] == 1) & (truth[:, 1:].sum(1) > 0)).any()


def test_masks(ds):
    ids, truth = _truth(ds)
    masked = [i for i in ids if (ds / "masks" / f"{i}.png").exists()]
    assert len(masked) == labels.scaled_counts(N)["xai"]
    for i in masked:
        t = truth[ids.index(i)]
        assert t.sum() > 0
        union = cv2.imread(str(ds / "masks" / f"{i}.png"), cv2.IMREAD_UNCHANGED)
        assert union.shape == (SIZE, SIZE) and union.dtype == np.uint8
        assert set(np.unique(union)) <= {0, 255} and union.any()
        acc = np.zeros_like(union)
        for c, v in zip(CODES, t):
            p = ds / "masks" / f"{i}_{c}.png"
            assert p.exists() == bool(v)
            if v:
                m = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
                assert m.shape == (SIZE, SIZE) and set(np.unique(m)) <= {0, 255} and m.any()
                acc |= m
        assert np.array_equal(acc, union)
    written = {p.name for p in (ds / "masks").iterdir()}
    assert all(n.split("_")[0] + "_" + n.split("_")[1].split(".")[0] in masked for n in written)


@pytest.mark.parametrize("size", [48, 96])
def test_masks_inside_lesion_and_distinct(size):
    for i in range(12):
        rng = np.random.default_rng([5, i])
        rgb, lesion, masks = rendering.render(rng, (0, 1, 1, 1, 1, 1, 1), size, labels.CENTRES[i % 6])
        assert rgb.shape == (size, size, 3) and rgb.dtype == np.uint8
        assert set(masks) == set(BCC_CODES)
        for m in masks.values():
            assert m.shape == (size, size) and m.any() and not (m & ~lesion).any()
    _, lesion, masks = rendering.render(np.random.default_rng(1), (1, 0, 0, 0, 0, 0, 0), 64)
    assert set(masks) == {"PN"}


def test_pattern_changes_pixels_inside_its_mask():
    """Drawing a pattern changes the image inside its mask (same rng stream, with vs without)."""
    for j, c in enumerate(CODES):
        pats = [0] * len(CODES)
        pats[j] = 1
        with_p, _, masks = rendering.render(np.random.default_rng(11), pats, 96)
        without, _, _ = rendering.render(np.random.default_rng(11), [0] * len(CODES), 96)
        diff = np.abs(with_p.astype(int) - without.astype(int)).sum(-1)
        assert diff[masks[c]].mean() > 3 * max(1.0, diff[~masks[c]].mean()), c


def test_raters(ds):
    _, ann = _rows(ds / "annotations.csv")
    blanks = {r: 0 for r in rater_model.RATER_NAMES}
    for row in ann:
        blanks[row["rater"]] += sum(row[c] == "" for c in CODES)
    cells = N * len(CODES)
    assert 0.04 < blanks["derm_2"] / cells < 0.2
    assert blanks["derm_1"] == blanks["derm_3"] == blanks["derm_4"] == 0


def test_rater_rates_are_exact():
    truth = labels.sample_truth(1559, labels.global_rng(0, 1559, 0))
    ratings = rater_model.simulate_raters(truth, np.random.default_rng(0))
    for r, name in enumerate(rater_model.RATER_NAMES):
        sens, spec = rater_model.RATERS[name]
        for j in range(len(CODES)):
            x, t = ratings[r, :, j], truth[:, j]
            ok = ~np.isnan(x)
            assert abs(x[ok & (t == 1)].mean() - sens[j]) < 0.005
            assert abs(1 - x[ok & (t == 0)].mean() - spec[j]) < 0.005


def test_atomic_on_failure(tmp_path, monkeypatch):
    out = tmp_path / "ds"
    writer.generate(out, n=10, size=48, seed=0, progress=False)
    before = _files(out)
    calls = {"n": 0}
    real = patterns.DRAWERS["AT"]

    def flaky(img, ctx):
        calls["n"] += 1
        if calls["n"] > 2:
            raise RuntimeError("boom")
        return real(img, ctx)

    monkeypatch.setitem(patterns.DRAWERS, "AT", flaky)
    with pytest.raises(RuntimeError, match="boom"):
        writer.generate(out, n=40, size=48, seed=0, progress=False, workers=1)
    assert _files(out) == before  # the previous dataset is untouched
    with pytest.raises(RuntimeError, match="boom"):
        writer.generate(tmp_path / "fresh", n=40, size=48, seed=0, progress=False, workers=1)
    assert not (tmp_path / "fresh").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]  # no temp dirs left behind


def test_replaces_existing(tmp_path):
    out = tmp_path / "ds"
    writer.generate(out, n=10, size=48, seed=0, progress=False)
    writer.generate(out, n=12, size=48, seed=0, progress=False)
    assert len(_rows(out / "images.csv")[1]) == 12
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]


def test_cli(tmp_path, capsys):
    cli.main(["--out", str(tmp_path / "cli"), "--n", "16", "--size", "48", "--seed", "2"])
    text = capsys.readouterr().out
    assert "BCC 8 / non-BCC 8" in text and "PN" in text
    assert (tmp_path / "cli" / "images.csv").exists()


def test_atomic_writes_get_ordinary_permissions(tmp_path):
    """mkstemp's private 0600 must not leak into results that others on a shared cluster read."""
    import os

    import pandas as pd

    from bcc.core.io import write_csv

    mask = os.umask(0o022)
    try:
        out = write_csv(pd.DataFrame({"a": [1]}), tmp_path / "x.csv")
    finally:
        os.umask(mask)
    assert out.stat().st_mode & 0o777 == 0o644
