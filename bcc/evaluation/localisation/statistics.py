"""Table 4's per-image statistics: one normalised Grad-CAM map z against a mask (Fg) and a background (Bg).

For z in [0, 1] and two disjoint boolean regions Fg (the expert's mask) and Bg (what Fg is compared with:
the rest of the image, as in the paper, or the rest of the lesion), ``region_stats`` gives

- the conditional PDFs P(z | Fg), P(z | Bg) as density histograms on fixed bins (``BINS``) and the area
  of their intersection, ∫ min(P(z|Fg), P(z|Bg)) dz, in [0, 1];
- mean and standard deviation of z in Fg and Bg, and the gap mean(Fg) − mean(Bg);
- ``auc``: the probability that a pixel of Fg is hotter than one of Bg (ties count half: the ROC AUC of
  the pixels, Fg positive, ``core.classification.roc_auc``). Unlike
  the gap it is unchanged by any increasing transformation of z: a sharper or flatter map with the same
  ranking of pixels scores the same (every centred radial map scores what the centre baseline does);
- the paper's pixel-wise two-sample z-test of the energy z², now **one-sided** (Fg hotter than Bg: a map
  hot outside the mask is not "significant"), and Cohen's d of the energies. Pixels of an upsampled map
  are far from independent, so this p-value is anti-conservative; it is kept to compare with the paper;
- ``placement_test``: a randomisation test that respects the spatial dependence — the mask's own shape
  moved to every position inside Fg ∪ Bg (the lesion, for the lesion background), the map left as it
  is; p is the share of placements whose energy in the moved mask is at least the observed one.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy.signal import correlate
from scipy.stats import wilcoxon
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.weightstats import ztest

from bcc.core.classification import roc_auc

BINS = np.linspace(0.0, 1.0, 51)
ALPHA = 0.05
CORRECTIONS = ("uncorrected", "bonferroni", "bh")


def conditional_pdfs(z: np.ndarray, fg: np.ndarray, bg: np.ndarray, bins: np.ndarray = BINS
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Density histograms of z in Fg and in Bg on `bins` (each integrates to 1)."""
    z = np.clip(np.asarray(z, dtype=np.float64), bins[0], bins[-1])
    pdf_fg = np.histogram(z[np.asarray(fg, bool)], bins=bins, density=True)[0]
    pdf_bg = np.histogram(z[np.asarray(bg, bool)], bins=bins, density=True)[0]
    return pdf_fg, pdf_bg


def pdf_intersection(pdf_a: np.ndarray, pdf_b: np.ndarray, bins: np.ndarray = BINS) -> float:
    """Area under min(pdf_a, pdf_b): 1 for identical distributions, 0 for disjoint ones."""
    return float(np.sum(np.minimum(pdf_a, pdf_b) * np.diff(bins)))


def energy_ztest(fg: np.ndarray, bg: np.ndarray) -> tuple[float, float]:
    """One-sided two-sample z-test of mean z² in Fg > mean z² in Bg (unpooled variances): (statistic, p)."""
    e1, e2 = np.square(fg, dtype=np.float64), np.square(bg, dtype=np.float64)
    if e1.var(ddof=1) == 0 and e2.var(ddof=1) == 0:  # two constants: no variance to test against
        diff = e1.mean() - e2.mean()
        return (0.0, 1.0) if diff == 0 else (float(np.sign(diff) * np.inf), float(diff < 0))
    stat, p = ztest(e1, e2, usevar="unequal", alternative="larger")
    return float(stat), float(p)


def cohens_d(a: np.ndarray, b: np.ndarray) -> float:
    """(mean a - mean b) / pooled standard deviation (ddof 1); 0 for two equal constants, NaN if undefined."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    diff = a.mean() - b.mean()
    pooled = ((a.size - 1) * a.var(ddof=1) + (b.size - 1) * b.var(ddof=1)) / (a.size + b.size - 2)
    if pooled == 0:
        return 0.0 if diff == 0 else float("nan")
    return float(diff / np.sqrt(pooled))


@dataclass(frozen=True)
class Placements:
    """Where a mask can be placed in a region (``placements``): its bounding-box shape, the box's observed
    top-left corner and the boolean grid of valid top-left corners. Shared by every map scored against
    the same mask and region."""

    shape: np.ndarray
    corner: tuple[int, int]
    valid: np.ndarray


def placements(fg: np.ndarray, region: np.ndarray) -> Placements:
    """Every integer translation of `fg` that stays in the image and covers at least as much of `region`
    as `fg` itself does (the observed one included); the cover is a correlation of the mask's bounding
    box with the region (FFT for large images)."""
    fg, region = np.asarray(fg, bool), np.asarray(region, bool)
    ys, xs = np.nonzero(fg)
    y0, x0 = int(ys.min()), int(xs.min())
    shape = fg[y0:ys.max() + 1, x0:xs.max() + 1].astype(np.float64)
    covered = correlate(region.astype(np.float64), shape, mode="valid")
    return Placements(shape, (y0, x0), covered >= np.count_nonzero(fg & region) - 0.5)  # integers, FFT rounding aside


def placement_test(z: np.ndarray, fg: np.ndarray, region: np.ndarray, where: Placements | None = None
                   ) -> tuple[float, int]:
    """``(p, n_placements)``: is the map's energy in the mask higher than in the same shape placed elsewhere?

    Over ``placements(fg, region)`` (or `where`, computed once for several maps), the statistic is the
    mean z² under the placed mask; p = share of placements scoring at least the observed value, so
    p >= 1 / n_placements: an image with fewer than 1/alpha placements can never be significant.
    """
    where = where or placements(fg, region)
    energy = correlate(np.square(np.asarray(z, dtype=np.float64)), where.shape, mode="valid")
    observed = energy[where.corner]
    tol = 1e-9 * max(1.0, abs(observed))
    n = int(np.count_nonzero(where.valid))
    return float(np.count_nonzero(energy[where.valid] >= observed - tol) / n), n


def region_stats(z: np.ndarray, fg: np.ndarray, bg: np.ndarray, bins: np.ndarray = BINS,
                 where: Placements | None = None) -> dict | None:
    """Table-4 statistics of map `z` in Fg against Bg (boolean arrays of z's shape, disjoint).

    None if Fg or Bg has fewer than 2 pixels. The placement test moves Fg within Fg ∪ Bg (`where`:
    ``placements(fg, fg | bg)``, when already computed for another map).
    """
    z, fg, bg = np.asarray(z, dtype=np.float64), np.asarray(fg, bool), np.asarray(bg, bool)
    if not (z.shape == fg.shape == bg.shape):
        raise ValueError(f"map shape {z.shape}, Fg {fg.shape} and Bg {bg.shape} differ")
    if (fg & bg).any():
        raise ValueError("Fg and Bg overlap")
    zf, zb = z[fg], z[bg]
    if zf.size < 2 or zb.size < 2:
        return None
    pdf_fg, pdf_bg = conditional_pdfs(z, fg, bg, bins)
    stat, p = energy_ztest(zf, zb)
    p_place, n_place = placement_test(z, fg, fg | bg, where)
    return {"n_fg": int(zf.size), "n_bg": int(zb.size), "mean_fg": float(zf.mean()), "mean_bg": float(zb.mean()),
            "std_fg": float(zf.std()), "std_bg": float(zb.std()), "gap": float(zf.mean() - zb.mean()),
            "auc": roc_auc(np.r_[np.ones(zf.size), np.zeros(zb.size)], np.r_[zf, zb]),
            "intersection": pdf_intersection(pdf_fg, pdf_bg, bins), "z_stat": stat, "p_ztest": p,
            "cohens_d": cohens_d(zf ** 2, zb ** 2), "p_placement": p_place, "n_placements": n_place,
            "pdf_fg": pdf_fg, "pdf_bg": pdf_bg}


def significance(p_values: Sequence[float], alpha: float = ALPHA) -> pd.DataFrame:
    """Columns uncorrected, bonferroni, bh (bool) for one family of tests (statsmodels' multipletests)."""
    p = np.asarray(p_values, dtype=np.float64)
    if p.size == 0:
        return pd.DataFrame({c: np.zeros(0, bool) for c in CORRECTIONS})
    return pd.DataFrame({"uncorrected": p < alpha,
                         "bonferroni": multipletests(p, alpha=alpha, method="bonferroni")[0],
                         "bh": multipletests(p, alpha=alpha, method="fdr_bh")[0]})


def paired_greater(a: ArrayLike, b: ArrayLike) -> dict[str, float]:
    """Is `a` larger than `b`, pair by pair (one image each)? Mean/median difference, share a > b and the
    one-sided Wilcoxon signed-rank p (scipy; NaN with fewer than 2 non-zero differences)."""
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    d = d[np.isfinite(d)]
    if d.size == 0:
        return {"n_pairs": 0, "mean_difference": np.nan, "median_difference": np.nan, "share_greater": np.nan,
                "p_wilcoxon": np.nan}
    p = float(wilcoxon(d, alternative="greater").pvalue) if np.count_nonzero(d) >= 2 else np.nan
    return {"n_pairs": int(d.size), "mean_difference": float(d.mean()), "median_difference": float(np.median(d)),
            "share_greater": float(np.mean(d > 0)), "p_wilcoxon": p}


def effect_size_label(d: float) -> str:
    """Cohen's d in words (Cohen 1988, extended by Sawilowsky 2009)."""
    if not np.isfinite(d):
        return "undefined"
    for bound, label in ((0.2, "negligible"), (0.5, "small"), (0.8, "medium"), (1.2, "large"), (2.0, "very large")):
        if abs(d) < bound:
            return label
    return "huge"
