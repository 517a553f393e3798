"""bcc.evaluation.mask_agreement (Table 4, Fig. 3): statistics against independent computations on hand-made arrays,
then mask_report end to end on a smoke-trained run."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.weightstats import ztest

from bcc.core.patterns import OUTPUTS
from bcc.evaluation.mask_agreement import (
    BINS,
    ROWS,
    _correct,
    cohens_d,
    conditional_pdfs,
    energy_ztest,
    figure3,
    image_stats,
    map_masks,
    mask_report,
    pdf_intersection,
    significance,
    table4,
)


def blob(size: int = 64, centre=(20, 40), radius: int = 10) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius ** 2


def hot_inside(mask: np.ndarray, seed: int = 0, contrast: float = 0.6) -> np.ndarray:
    """A [0, 1] map: noise everywhere, `contrast` higher inside the mask."""
    rng = np.random.default_rng(seed)
    return np.clip(0.2 * rng.random(mask.shape) + contrast * mask, 0, 1)


# ---- per-image statistics --------------------------------------------------------------------------------
def test_energy_ztest_matches_statsmodels_and_scipy():
    rng = np.random.default_rng(0)
    fg, bg = rng.random(300), 0.8 * rng.random(2000)
    stat, p = energy_ztest(fg, bg)
    ref_stat, ref_p = ztest(fg ** 2, bg ** 2, usevar="unequal")  # statsmodels: two-sided, unpooled
    assert stat == pytest.approx(ref_stat, rel=1e-10) and p == pytest.approx(ref_p, rel=1e-8)
    se = np.sqrt(np.var(fg ** 2, ddof=1) / fg.size + np.var(bg ** 2, ddof=1) / bg.size)
    by_hand = (np.mean(fg ** 2) - np.mean(bg ** 2)) / se
    assert stat == pytest.approx(by_hand, rel=1e-10)
    assert p == pytest.approx(2 * stats.norm.sf(abs(by_hand)), rel=1e-8)
    # symmetric: swapping the groups flips the sign, keeps the p-value
    s2, p2 = energy_ztest(bg, fg)
    assert s2 == pytest.approx(-stat) and p2 == pytest.approx(p)
    # constant groups: no variance
    assert energy_ztest(np.ones(5), np.ones(7)) == (0.0, 1.0)
    assert energy_ztest(np.ones(5), np.zeros(7)) == (np.inf, 0.0)


def test_cohens_d_by_formula():
    a = np.array([1.0, 2.0, 4.0, 7.0])
    b = np.array([0.0, 1.0, 1.0, 2.0, 3.0, 5.0])
    s = np.sqrt(((a.size - 1) * a.var(ddof=1) + (b.size - 1) * b.var(ddof=1)) / (a.size + b.size - 2))
    assert cohens_d(a, b) == pytest.approx((a.mean() - b.mean()) / s, rel=1e-12)
    assert cohens_d(b, a) == pytest.approx(-cohens_d(a, b))
    # two unit-variance normals one standard deviation apart: d ≈ 1
    rng = np.random.default_rng(1)
    assert cohens_d(rng.normal(1, 1, 20000), rng.normal(0, 1, 30000)) == pytest.approx(1.0, abs=0.03)
    assert cohens_d(np.full(3, 2.0), np.full(4, 2.0)) == 0.0
    assert np.isnan(cohens_d(np.full(3, 2.0), np.full(4, 1.0)))


def test_pdf_intersection_identical_disjoint_and_partial():
    rng = np.random.default_rng(2)
    z = rng.random(5000)
    pdf = np.histogram(z, bins=BINS, density=True)[0]
    assert np.sum(pdf * np.diff(BINS)) == pytest.approx(1.0)
    assert pdf_intersection(pdf, pdf) == pytest.approx(1.0)
    low = np.histogram(0.3 * z, bins=BINS, density=True)[0]          # z in [0, 0.3)
    high = np.histogram(0.7 + 0.3 * z, bins=BINS, density=True)[0]   # z in [0.7, 1)
    assert pdf_intersection(low, high) == 0.0
    # uniform on [0, 1] vs uniform on [0, 0.5]: overlap = ∫_0^0.5 min(1, 2) dz = 0.5
    uni = np.ones(50)
    half = np.r_[np.full(25, 2.0), np.zeros(25)]
    assert pdf_intersection(uni, half) == pytest.approx(0.5)


def test_conditional_pdfs_are_densities_of_the_two_regions():
    mask = blob()
    z = hot_inside(mask)
    pdf_fg, pdf_bg = conditional_pdfs(z, mask)
    width = np.diff(BINS)
    assert np.sum(pdf_fg * width) == pytest.approx(1.0) and np.sum(pdf_bg * width) == pytest.approx(1.0)
    counts = np.histogram(z[mask], bins=BINS)[0]
    assert np.allclose(pdf_fg, counts / (mask.sum() * width))
    # values exactly 1.0 land in the last bin (closed), never outside
    pdf_fg, _ = conditional_pdfs(np.where(mask, 1.0, 0.0), mask)
    assert pdf_fg[-1] * width[-1] == pytest.approx(1.0)


def test_map_hot_inside_the_mask_is_significant_and_aligned():
    mask = blob()
    z = hot_inside(mask)
    s = image_stats(z, mask)
    assert s["n_fg"] == mask.sum() and s["n_bg"] == (~mask).sum()
    assert s["mean_fg"] == pytest.approx(z[mask].mean()) and s["mean_bg"] == pytest.approx(z[~mask].mean())
    assert s["std_fg"] == pytest.approx(z[mask].std()) and s["std_bg"] == pytest.approx(z[~mask].std())
    assert s["mean_fg"] > s["mean_bg"] + 0.5
    assert s["z_stat"] > 0 and s["p_value"] < 1e-10
    assert s["cohens_d"] == pytest.approx(cohens_d(z[mask] ** 2, z[~mask] ** 2)) and s["cohens_d"] > 2
    assert s["intersection"] == 0.0  # Fg values in [0.6, 0.8], Bg in [0, 0.2]
    # the same map against an unrelated region: no alignment
    other = image_stats(hot_inside(np.zeros_like(mask), seed=3), mask)
    assert other["p_value"] > 1e-3 and abs(other["cohens_d"]) < 0.5 and other["intersection"] > 0.7
    # cold inside: negative d and statistic
    inverted = image_stats(1 - z, mask)
    assert inverted["cohens_d"] < 0 and inverted["z_stat"] < 0


def test_image_stats_edge_cases():
    mask = blob()
    assert image_stats(np.zeros(mask.shape), np.zeros(mask.shape, bool)) is None  # no foreground
    assert image_stats(np.zeros(mask.shape), np.ones(mask.shape, bool)) is None   # no background
    with pytest.raises(ValueError, match="shape"):
        image_stats(np.zeros((10, 10)), np.zeros((10, 11), bool))


# ---- over images -------------------------------------------------------------------------------------
def test_significance_matches_multipletests_and_hand_bh():
    p = np.array([0.001, 0.008, 0.039, 0.041, 0.042, 0.06, 0.074, 0.205, 0.212, 0.216])
    sig = significance(p)
    assert sig["sig_uncorrected"].tolist() == (p < 0.05).tolist()
    assert sig["sig_bonferroni"].tolist() == (p * p.size < 0.05).tolist() == [True] + [False] * 9
    assert sig["sig_bonferroni"].tolist() == multipletests(p, 0.05, "bonferroni")[0].tolist()
    assert sig["sig_bh"].tolist() == multipletests(p, 0.05, "fdr_bh")[0].tolist()
    # Benjamini–Hochberg step-up by hand: the largest k with p_(k) <= k/m * alpha, and all below it
    order = np.argsort(p)
    ok = np.nonzero(p[order] <= np.arange(1, p.size + 1) / p.size * 0.05)[0]
    expected = np.zeros(p.size, bool)
    expected[order[:ok.max() + 1]] = True
    assert sig["sig_bh"].tolist() == expected.tolist() == [True, True] + [False] * 8
    assert significance([]).shape == (0, 3)


def _records() -> pd.DataFrame:
    """Per-map records as run_records makes them: 6 diagnosis maps (3 correct, 2 incorrect, 1 unlabelled)
    and 4 pattern maps (2 correct, 2 incorrect), hot inside the mask when correct."""
    mask = blob()
    rows = []
    plan = [("bcc", True)] * 3 + [("bcc", False)] * 2 + [("bcc", pd.NA)] + [("U", True), ("MG", True),
                                                                             ("PN", False), ("AT", False)]
    for i, (output, correct) in enumerate(plan):
        contrast = 0.6 if correct is True else 0.0
        rows.append({"image_id": f"img{i}", "fold": 0, "output": output, "correct": correct,
                     **image_stats(hot_inside(mask, seed=i, contrast=contrast), mask)})
    return pd.DataFrame(rows)


def test_table4_splits_by_correct_and_incorrect():
    rec = _records()
    t = table4(rec)
    assert list(t.index) == list(ROWS)
    assert list(t.columns) == [f"{k}/{g}" for k in ("diagnosis", "patterns") for g in ("correct", "incorrect", "all")]
    assert t.loc["n_maps"].tolist() == [3, 2, 6, 2, 2, 4]
    diag_ok = rec[(rec["output"] == "bcc") & rec["correct"].eq(True)]
    c = t["diagnosis/correct"]
    # group PDFs are the equal-weight mean of the per-image PDFs; their moments those of the mixture
    mean_fg = np.mean([np.mean(hot_inside(blob(), seed=i, contrast=0.6)[blob()]) for i in range(3)])
    assert c["mean_fg"] == pytest.approx(mean_fg) and c["mean_fg"] == pytest.approx(diag_ok["mean_fg"].mean())
    pooled = np.concatenate([hot_inside(blob(), seed=i, contrast=0.6)[~blob()] for i in range(3)])
    assert c["std_bg"] == pytest.approx(pooled.std(), rel=1e-9)  # same Bg size per image: mixture = pooled
    pdf_fg = np.mean(np.stack(diag_ok["pdf_fg"].to_list()), 0)
    pdf_bg = np.mean(np.stack(diag_ok["pdf_bg"].to_list()), 0)
    assert c["intersection"] == pytest.approx(pdf_intersection(pdf_fg, pdf_bg))
    assert c["intersection_image_mean"] == pytest.approx(diag_ok["intersection"].mean())
    assert c["cohens_d_mean"] == pytest.approx(diag_ok["cohens_d"].mean())
    assert c["cohens_d_median"] == pytest.approx(diag_ok["cohens_d"].median())
    # correct maps are hot inside: significant, large d; incorrect ones are noise
    assert c["mean_fg"] > c["mean_bg"] + 0.5 and c["share_sig_bh"] == 1.0 and c["share_sig_bonferroni"] == 1.0
    inc = t["diagnosis/incorrect"]
    assert abs(inc["mean_fg"] - inc["mean_bg"]) < 0.05 and abs(inc["cohens_d_mean"]) < 0.5
    # the corrections treat the 6 diagnosis maps as one family; counts add up over the groups
    diag = rec[rec["output"] == "bcc"]
    family = multipletests(diag["p_value"], 0.05, "bonferroni")[0]
    assert t.loc["n_sig_bonferroni", "diagnosis/all"] == family.sum()
    assert (t.loc["n_sig_uncorrected", "diagnosis/all"]
            == (diag["p_value"] < 0.05).sum()
            >= t.loc["n_sig_uncorrected", "diagnosis/correct"] + t.loc["n_sig_uncorrected", "diagnosis/incorrect"])
    assert t.loc["share_sig_uncorrected", "patterns/correct"] == 1.0
    # a group with no maps is NaN, not an error
    only_ok = table4(rec[rec["correct"].eq(True)].reset_index(drop=True))
    assert only_ok.loc["n_maps", "diagnosis/incorrect"] == 0 and np.isnan(only_ok.loc["mean_fg", "diagnosis/incorrect"])


def test_correct_and_map_masks(tmp_path):
    row = pd.Series({"y_bcc": 1.0, "p_bcc": 0.7, "y_U": 0.0, "p_U": 0.6, "y_PN": np.nan, "p_PN": 0.2})
    assert _correct(row, "bcc") is True and _correct(row, "U") is False and _correct(row, "PN") is pd.NA
    a, b, pn = np.zeros((8, 8), np.uint8), np.zeros((8, 8), np.uint8), np.zeros((8, 8), np.uint8)
    a[:2] = 255
    b[-2:] = 255
    pn[3:5] = 255
    paths = {}
    for code, m in (("U", a), ("MG", b), ("PN", pn), ("AT", np.zeros((8, 8), np.uint8))):
        paths[code] = tmp_path / f"x_{code}.png"
        Image.fromarray(m).save(paths[code])
    masks = map_masks(paths)
    assert list(masks) == ["bcc", "PN", "U", "MG"]  # OUTPUTS order; the empty AT mask is dropped
    assert np.array_equal(masks["bcc"], (a > 0) | (b > 0))  # union of BCC patterns, PN left out
    union = tmp_path / "x.png"
    Image.fromarray(a | b | pn).save(union)
    assert list(map_masks({"all": union})) == ["bcc"]


def test_figure3_writes_png(tmp_path):
    mask = blob()
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (*mask.shape, 3), dtype=np.uint8)
    path = figure3(rgb, mask, hot_inside(mask), tmp_path / "figs" / "fig3.png", title="test")
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size[0] > 3 * im.size[1]  # four panels side by side


# ---- end to end --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def smoke_run(ckpt):
    """The session's stage-0 smoke run (trained from scratch in a few seconds): its run dir."""
    return ckpt.parent


@pytest.mark.slow
def test_mask_report_on_a_trained_smoke_run(smoke_run, data_dir, tmp_path):
    from bcc.data.contract import load_dataset

    root = data_dir / "synthetic-smoke"
    table, figures = mask_report([smoke_run], root, tmp_path / "report", max_figures=2)
    assert (tmp_path / "report" / "table4.csv").is_file()
    per_map = pd.read_csv(tmp_path / "report" / "gradcam_per_image.csv", dtype={"image_id": str})
    ds = load_dataset(root)
    preds = pd.read_csv(smoke_run / "predictions.csv", dtype={"image_id": str})
    with_masks = set(preds["image_id"]) & set(ds.masks)
    assert with_masks and set(per_map["image_id"]) <= with_masks
    assert set(per_map["output"]) <= set(OUTPUTS) and "bcc" in set(per_map["output"])
    assert per_map["p_value"].between(0, 1).all() and per_map["mean_fg"].between(0, 1).all()
    # the table is table4 of those records, and counts split by correctness add up
    assert table.loc["n_maps", "diagnosis/all"] == (per_map["output"] == "bcc").sum()
    assert table.loc["n_maps", "patterns/all"] == (per_map["output"] != "bcc").sum()
    for kind in ("diagnosis", "patterns"):
        labelled = table.loc["n_maps", f"{kind}/correct"] + table.loc["n_maps", f"{kind}/incorrect"]
        assert labelled <= table.loc["n_maps", f"{kind}/all"]
    back = pd.read_csv(tmp_path / "report" / "table4.csv", index_col="statistic")
    assert np.allclose(back.to_numpy(float), table.to_numpy(float), equal_nan=True)
    # one record per (image, output with a non-empty mask), recomputable from the saved maps' definition
    first = per_map.iloc[0]
    assert first["n_fg"] + first["n_bg"] == np.prod(np.asarray(Image.open(ds.image_path(first["image_id"]))).shape[:2])
    assert 1 <= len(figures) <= 2 and all(p.is_file() and p.suffix == ".png" for p in figures)


def test_mask_report_without_masks(tmp_path, data_dir):
    """A dataset without masks/ gives an empty table and writes nothing (no run is even opened)."""
    import shutil

    root = tmp_path / "nomasks"
    shutil.copytree(data_dir / "synthetic-smoke", root, ignore=shutil.ignore_patterns("masks", ".cache"))
    table, figures = mask_report([tmp_path / "no-run"], root, tmp_path / "report")
    assert table.empty and figures == [] and not (tmp_path / "report" / "table4.csv").exists()
