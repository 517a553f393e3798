"""bcc.evaluation.localisation.statistics and .tables: each Table-4 statistic on hand-made maps whose answer is known,
against independent computations (statsmodels, scipy, brute force, formulas)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.weightstats import ztest

from bcc.evaluation.localisation.statistics import (
    BINS,
    cohens_d,
    conditional_pdfs,
    effect_size_label,
    energy_ztest,
    paired_greater,
    pdf_intersection,
    placement_test,
    region_stats,
    significance,
)
from bcc.evaluation.localisation.tables import faithfulness, statistics


def disc(size: int = 64, centre=(20, 40), radius: float = 10) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius ** 2


def hot_inside(mask: np.ndarray, seed: int = 0, contrast: float = 0.6) -> np.ndarray:
    """A [0, 1] map: noise everywhere, `contrast` higher inside the mask."""
    rng = np.random.default_rng(seed)
    return np.clip(0.2 * rng.random(mask.shape) + contrast * mask, 0, 1)


# ---- the z-test, one-sided ------------------------------------------------------------------------------
def test_energy_ztest_is_one_sided_and_matches_statsmodels():
    rng = np.random.default_rng(0)
    fg, bg = rng.random(300), 0.8 * rng.random(2000)
    stat, p = energy_ztest(fg, bg)
    ref_stat, ref_p = ztest(fg ** 2, bg ** 2, usevar="unequal", alternative="larger")
    assert stat == pytest.approx(ref_stat, rel=1e-10) and p == pytest.approx(ref_p, rel=1e-8)
    se = np.sqrt(np.var(fg ** 2, ddof=1) / fg.size + np.var(bg ** 2, ddof=1) / bg.size)
    by_hand = (np.mean(fg ** 2) - np.mean(bg ** 2)) / se
    assert stat == pytest.approx(by_hand, rel=1e-10) and p == pytest.approx(stats.norm.sf(by_hand), rel=1e-8)
    # background hotter than the mask: a large |statistic|, but p near 1 (a two-sided test called it significant)
    s2, p2 = energy_ztest(bg, fg)
    assert s2 == pytest.approx(-stat) and p2 == pytest.approx(1 - p) and p2 > 0.999
    # constant groups: no variance to test against
    assert energy_ztest(np.ones(5), np.ones(7)) == (0.0, 1.0)
    assert energy_ztest(np.ones(5), np.zeros(7)) == (np.inf, 0.0)
    assert energy_ztest(np.zeros(5), np.ones(7)) == (-np.inf, 1.0)


def test_a_map_hot_outside_the_mask_is_never_significant():
    mask, lesion = disc(radius=6), disc(radius=16)
    for bg in (~mask, lesion & ~mask):
        for seed in range(5):
            s = region_stats(hot_inside(~mask, seed=seed), mask, bg)
            assert s["gap"] < -0.4 and s["cohens_d"] < 0 and s["z_stat"] < 0
            assert s["p_ztest"] > 0.5 and s["p_placement"] > 0.5


# ---- the placement test ------------------------------------------------------------------------------------
def _placements_by_brute_force(z, fg, region):
    """Every shift of fg's bounding box inside the image covering at least as much of region: energies."""
    ys, xs = np.nonzero(fg)
    box = fg[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    h, w = box.shape
    own = (fg & region).sum()
    obs = (z[fg] ** 2).sum()
    energies = []
    for y in range(z.shape[0] - h + 1):
        for x in range(z.shape[1] - w + 1):
            if (region[y:y + h, x:x + w] & box).sum() >= own:
                energies.append((z[y:y + h, x:x + w][box] ** 2).sum())
    energies = np.array(energies)
    return np.mean(energies >= obs - 1e-12), energies.size


@pytest.mark.parametrize("seed", range(4))
def test_placement_test_equals_brute_force(seed):
    rng = np.random.default_rng(seed)
    z = rng.random((24, 24))
    lesion = disc(24, (12, 10), 9)
    fg = disc(24, (10 + seed, 8), 2.5) & lesion
    for region in (lesion, np.ones_like(lesion)):
        p, n = placement_test(z, fg, region)
        ref_p, ref_n = _placements_by_brute_force(z, fg, region)
        assert n == ref_n and p == pytest.approx(ref_p)


def test_placement_test_by_hand():
    z = np.zeros((5, 5))
    z[2, 3] = 1.0
    one = np.zeros((5, 5), bool)
    one[2, 3] = True
    everywhere = np.ones((5, 5), bool)
    assert placement_test(z, one, everywhere) == (pytest.approx(1 / 25), 25)  # the only hot place of 25
    cold = np.roll(one, 1, axis=0)
    assert placement_test(z, cold, everywhere) == (1.0, 25)  # every place is at least as hot as a cold one
    # a 2-pixel mask in a 1 x 4 strip: 3 placements, the observed one the hottest
    strip = np.zeros((1, 4))
    strip[0, :2] = [0.5, 1.0]
    pair = np.array([[True, True, False, False]])
    assert placement_test(strip, pair, np.ones((1, 4), bool)) == (pytest.approx(1 / 3), 3)
    # a uniform map: every placement ties, p = 1
    assert placement_test(np.ones((5, 5)), one, everywhere)[0] == 1.0


# ---- per image --------------------------------------------------------------------------------------------
def test_cohens_d_by_formula():
    a = np.array([1.0, 2.0, 4.0, 7.0])
    b = np.array([0.0, 1.0, 1.0, 2.0, 3.0, 5.0])
    s = np.sqrt(((a.size - 1) * a.var(ddof=1) + (b.size - 1) * b.var(ddof=1)) / (a.size + b.size - 2))
    assert cohens_d(a, b) == pytest.approx((a.mean() - b.mean()) / s, rel=1e-12)
    assert cohens_d(b, a) == pytest.approx(-cohens_d(a, b))
    rng = np.random.default_rng(1)
    assert cohens_d(rng.normal(1, 1, 20000), rng.normal(0, 1, 30000)) == pytest.approx(1.0, abs=0.03)
    assert cohens_d(np.full(3, 2.0), np.full(4, 2.0)) == 0.0
    assert np.isnan(cohens_d(np.full(3, 2.0), np.full(4, 1.0)))
    assert [effect_size_label(d) for d in (0.1, -0.3, 0.6, 1.0, 1.5, 2.5, np.nan)] == [
        "negligible", "small", "medium", "large", "very large", "huge", "undefined"]


def test_pdf_intersection_identical_disjoint_and_partial():
    rng = np.random.default_rng(2)
    z = rng.random(5000)
    pdf = np.histogram(z, bins=BINS, density=True)[0]
    assert np.sum(pdf * np.diff(BINS)) == pytest.approx(1.0)
    assert pdf_intersection(pdf, pdf) == pytest.approx(1.0)
    low = np.histogram(0.3 * z, bins=BINS, density=True)[0]
    high = np.histogram(0.7 + 0.3 * z, bins=BINS, density=True)[0]
    assert pdf_intersection(low, high) == 0.0
    uni, half = np.ones(50), np.r_[np.full(25, 2.0), np.zeros(25)]
    assert pdf_intersection(uni, half) == pytest.approx(0.5)


def test_conditional_pdfs_are_densities_of_the_two_regions():
    mask, lesion = disc(), disc(radius=18)
    z = hot_inside(mask)
    width = np.diff(BINS)
    pdf_fg, pdf_bg = conditional_pdfs(z, mask, lesion & ~mask)
    assert np.sum(pdf_fg * width) == pytest.approx(1.0) and np.sum(pdf_bg * width) == pytest.approx(1.0)
    assert np.allclose(pdf_bg, np.histogram(z[lesion & ~mask], bins=BINS)[0] / ((lesion & ~mask).sum() * width))
    pdf_fg, _ = conditional_pdfs(np.where(mask, 1.0, 0.0), mask, ~mask)  # z = 1.0 lands in the last bin
    assert pdf_fg[-1] * width[-1] == pytest.approx(1.0)


def test_a_map_equal_to_the_mask_scores_the_maximum():
    mask, lesion = disc(radius=5), disc(radius=18)
    z = mask.astype(float)
    for bg in (~mask, lesion & ~mask):
        s = region_stats(z, mask, bg)
        assert s["n_fg"] == mask.sum() and s["n_bg"] == bg.sum()
        assert (s["mean_fg"], s["mean_bg"], s["gap"], s["intersection"]) == (1.0, 0.0, 1.0, 0.0)
        assert s["p_ztest"] == 0.0 and s["z_stat"] == np.inf
        assert s["p_placement"] == pytest.approx(1 / s["n_placements"]) and s["n_placements"] > 100
    # noise added: means, stds and d as defined; the placement region is Fg ∪ Bg
    z = hot_inside(mask)
    s = region_stats(z, mask, lesion & ~mask)
    assert s["mean_fg"] == pytest.approx(z[mask].mean()) and s["std_bg"] == pytest.approx(z[lesion & ~mask].std())
    assert s["cohens_d"] == pytest.approx(cohens_d(z[mask] ** 2, z[lesion & ~mask] ** 2)) and s["cohens_d"] > 2
    assert s["n_placements"] == placement_test(z, mask, lesion)[1] < region_stats(z, mask, ~mask)["n_placements"]


def test_region_stats_edge_cases():
    mask = disc()
    assert region_stats(np.zeros(mask.shape), np.zeros(mask.shape, bool), ~np.zeros(mask.shape, bool)) is None
    assert region_stats(np.zeros(mask.shape), mask, np.zeros(mask.shape, bool)) is None
    with pytest.raises(ValueError, match="shape"):
        region_stats(np.zeros((10, 10)), np.zeros((10, 11), bool), np.zeros((10, 11), bool))
    with pytest.raises(ValueError, match="overlap"):
        region_stats(np.zeros(mask.shape), mask, np.ones(mask.shape, bool))


# ---- over images ----------------------------------------------------------------------------------------
def test_significance_matches_multipletests_and_hand_bh():
    p = np.array([0.001, 0.008, 0.039, 0.041, 0.042, 0.06, 0.074, 0.205, 0.212, 0.216])
    sig = significance(p)
    assert sig["uncorrected"].tolist() == (p < 0.05).tolist()
    assert sig["bonferroni"].tolist() == (p * p.size < 0.05).tolist() == [True] + [False] * 9
    assert sig["bh"].tolist() == multipletests(p, 0.05, "fdr_bh")[0].tolist()
    order = np.argsort(p)
    ok = np.nonzero(p[order] <= np.arange(1, p.size + 1) / p.size * 0.05)[0]
    expected = np.zeros(p.size, bool)
    expected[order[:ok.max() + 1]] = True
    assert sig["bh"].tolist() == expected.tolist() == [True, True] + [False] * 8
    assert significance([]).shape == (0, 3)


def test_paired_greater_is_scipys_one_sided_wilcoxon():
    a, b = np.array([0.5, 0.7, 0.2, 0.9, 0.4, 0.8]), np.array([0.1, 0.2, 0.3, 0.1, 0.0, 0.5])
    t = paired_greater(a, b)
    assert t["p_wilcoxon"] == pytest.approx(stats.wilcoxon(a - b, alternative="greater").pvalue)
    assert t["n_pairs"] == 6 and t["share_greater"] == pytest.approx(5 / 6)
    assert t["mean_difference"] == pytest.approx(np.mean(a - b)) and t["median_difference"] == pytest.approx(0.4)
    assert paired_greater(b, a)["p_wilcoxon"] > 0.9
    assert np.isnan(paired_greater([1.0, 2.0], [1.0, 2.0])["p_wilcoxon"])  # no non-zero difference
    assert paired_greater([], [])["n_pairs"] == 0


def _records(n: int = 6) -> pd.DataFrame:
    """Records as localisation.records makes them: gradcam maps hot inside the mask when correct, noise when not."""
    mask, lesion = disc(radius=5), disc(radius=18)
    rows = []
    for i in range(n):
        correct = [True, False, pd.NA][i % 3]
        z = hot_inside(mask, seed=i, contrast=0.6 if correct is True else 0.0)
        for bg_name, bg in (("image", ~mask), ("lesion", lesion & ~mask)):
            rows.append({"run_dir": "r", "image_id": f"img{i}", "output": "bcc", "kind": "diagnosis",
                         "correct": correct, "map": "gradcam", "background": bg_name, "empty_map": False,
                         "mass_accuracy": 0.5, "rank_accuracy": 0.5, "pointing_game": 1.0,
                         **region_stats(z, mask, bg)})
    return pd.DataFrame(rows)


def test_statistics_table_by_group_and_background():
    rec = _records()
    t = statistics(rec).set_index(["map", "kind", "background", "group"])
    assert list(t.index) == [("gradcam", "diagnosis", bg, g) for bg in ("image", "lesion")
                             for g in ("correct", "incorrect", "all")]
    assert t["n_maps"].tolist() == [2, 2, 6] * 2
    ok = rec[(rec["background"] == "lesion") & rec["correct"].eq(True)]
    c = t.loc[("gradcam", "diagnosis", "lesion", "correct")]
    assert c["mean_fg"] == pytest.approx(ok["mean_fg"].mean()) and c["gap"] == pytest.approx(ok["gap"].mean())
    pdf_fg, pdf_bg = np.mean(np.stack(ok["pdf_fg"].to_list()), 0), np.mean(np.stack(ok["pdf_bg"].to_list()), 0)
    assert c["intersection"] == pytest.approx(pdf_intersection(pdf_fg, pdf_bg))
    assert c["cohens_d_median"] == pytest.approx(ok["cohens_d"].median())
    assert c["sig_ztest_bh"] == 1.0 and c["sig_placement_bh"] == 1.0
    inc = t.loc[("gradcam", "diagnosis", "lesion", "incorrect")]
    assert abs(inc["gap"]) < 0.05 and inc["sig_placement_uncorrected"] < 1
    # the corrections treat the 6 maps of one (map, kind, background) as one family
    lesion = rec[rec["background"] == "lesion"]
    assert t.loc[("gradcam", "diagnosis", "lesion", "all"), "sig_ztest_bonferroni"] == pytest.approx(
        multipletests(lesion["p_ztest"], 0.05, "bonferroni")[0].mean())
    assert t.loc[("gradcam", "diagnosis", "lesion", "all"), "mass_accuracy"] == 0.5


def test_faithfulness_table():
    twins = pd.DataFrame({"image_id": list("abcde"), "y_bcc": [1, 1, 1, 0, np.nan],
                          "p_image": [0.9, 0.8, 0.7, 0.2, 0.5], "p_twin": [0.2, 0.3, 0.75, 0.1, 0.5]})
    road = pd.DataFrame({"run_dir": "r", "image_id": list("aabb"), "map": ["gradcam", "centre"] * 2,
                         "road": [0.3, 0.1, np.nan, 0.0]})
    f = faithfulness(twins, road).set_index(["test", "subject"])
    bcc = f.loc[("twin_deletion", "BCC images")]
    assert bcc["n"] == 3 and bcc["share_positive"] == pytest.approx(2 / 3)
    assert bcc["mean"] == pytest.approx(np.mean([0.7, 0.5, -0.05])) and bcc["mean_before"] == pytest.approx(0.8)
    assert f.loc[("twin_deletion", "non-BCC images"), "n"] == 1  # the unlabelled image is in neither row
    assert f.loc[("road", "gradcam"), "n"] == 1 and f.loc[("road", "centre"), "n"] == 2
    assert f.loc[("road", "gradcam - centre"), "mean"] == pytest.approx(0.2)
    assert faithfulness(pd.DataFrame(), pd.DataFrame()).empty


def test_region_auc_ranks_pixels():
    """The pixels' AUC: hand-counted pairs, and unchanged by an increasing transformation of the map (the gap
    is not)."""
    # Fg pixels 0.9, 0.5 against Bg 0.1, 0.5, 0.7: 0.9 beats all 3, 0.5 beats 0.1 and ties 0.5 -> (3 + 1.5) / 6
    z = np.array([[0.9, 0.5, 0.1], [0.5, 0.7, 0.0]])
    fg, bg = np.array([[1, 1, 0], [0, 0, 0]], bool), np.array([[0, 0, 1], [1, 1, 0]], bool)
    assert region_stats(z, fg, bg)["auc"] == pytest.approx(4.5 / 6)
    rng = np.random.default_rng(3)
    mask = disc()
    z = np.round(rng.random(mask.shape), 2)  # many ties
    plain, cubed = region_stats(z, mask, ~mask), region_stats(z ** 3, mask, ~mask)
    assert cubed["auc"] == pytest.approx(plain["auc"]) and cubed["gap"] != pytest.approx(plain["gap"])
    assert region_stats(np.ones(mask.shape), mask, ~mask)["auc"] == 0.5
