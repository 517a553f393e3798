"""Table 4 from per-map records: the statistics table, the model against each baseline, per pattern head,
and the deletion tests.

A record (``table4.run_records``) is one map scored against one mask and one background:
``map`` (``MAPS``: the model's Grad-CAM or a baseline), ``kind`` (``diagnosis``: the bcc output's map
against the union of the BCC-pattern masks; ``patterns``: each code's map against its own mask),
``background`` (``BACKGROUNDS``), ``correct`` (the model's prediction for that output and image) and
the columns of ``statistics.region_stats`` and ``quantus_metrics.localisation``.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from bcc.core.patterns import CODES
from bcc.evaluation.localisation.statistics import (
    ALPHA,
    BINS,
    CORRECTIONS,
    paired_greater,
    pdf_intersection,
    significance,
)

MAPS = ("gradcam", "centre", "uniform_lesion", "shuffled_mask")
BASELINES = MAPS[1:]
BACKGROUNDS = ("image", "lesion", "other_patterns")  # Bg = image − mask, lesion − mask, other codes' masks
GROUPS = ("correct", "incorrect", "all")
KINDS = ("diagnosis", "patterns")
KEYS = ["map", "kind", "background", "group"]
LOCALISATION = ("mass_accuracy", "rank_accuracy", "pointing_game")


def _mixture_moments(means: np.ndarray, stds: np.ndarray) -> tuple[float, float]:
    """Mean and std of the equal-weight mixture of per-image distributions (exact, not binned)."""
    mean = float(np.mean(means))
    return mean, float(np.sqrt(max(np.mean(stds ** 2 + means ** 2) - mean ** 2, 0.0)))


def _nan_stat(s: pd.Series, how: str) -> float:
    s = pd.to_numeric(s, errors="coerce").dropna()
    return float(getattr(s, how)()) if len(s) else np.nan


def _column(rec: pd.DataFrame, bins: np.ndarray) -> dict[str, float]:
    n = len(rec)
    if n == 0:
        return {"n_maps": 0}
    pdf_fg, pdf_bg = np.mean(np.stack(rec["pdf_fg"].to_list()), 0), np.mean(np.stack(rec["pdf_bg"].to_list()), 0)
    mean_fg, std_fg = _mixture_moments(rec["mean_fg"].to_numpy(), rec["std_fg"].to_numpy())
    mean_bg, std_bg = _mixture_moments(rec["mean_bg"].to_numpy(), rec["std_bg"].to_numpy())
    return {"n_maps": n, "share_empty_maps": float(rec["empty_map"].mean()),
            "intersection": pdf_intersection(pdf_fg, pdf_bg, bins), "mean_fg": mean_fg, "mean_bg": mean_bg,
            "std_fg": std_fg, "std_bg": std_bg, "gap": mean_fg - mean_bg, "gap_median": float(rec["gap"].median()),
            "auc": float(rec["auc"].mean()),
            "intersection_image_mean": float(rec["intersection"].mean()),
            "cohens_d_mean": _nan_stat(rec["cohens_d"], "mean"), "cohens_d_median": _nan_stat(rec["cohens_d"], "median"),
            **{f"sig_ztest_{m}": float(rec[f"sig_ztest_{m}"].mean()) for m in CORRECTIONS},
            **{f"sig_placement_{m}": float(rec[f"sig_placement_{m}"].mean()) for m in CORRECTIONS},
            "placements_median": float(rec["n_placements"].median()),
            **{m: _nan_stat(rec[m], "mean") for m in LOCALISATION}}


def _flag_significance(rec: pd.DataFrame, alpha: float) -> pd.DataFrame:
    """sig_ztest_* and sig_placement_* columns; one family of tests per (map, kind, background)."""
    parts = []
    for _, sub in rec.groupby(KEYS[:3], sort=False):
        sub = sub.reset_index()
        z = significance(sub["p_ztest"], alpha).add_prefix("sig_ztest_")
        place = significance(sub["p_placement"], alpha).add_prefix("sig_placement_")
        parts.append(pd.concat([sub, z, place], axis=1).set_index("index"))
    return pd.concat(parts).loc[rec.index]


def _groups(rec: pd.DataFrame):
    """(group, records): correct and incorrect predictions, then all (unlabelled ones only there)."""
    correct = rec["correct"].astype("boolean")
    yield "correct", rec[correct.eq(True).fillna(False).to_numpy(bool)]
    yield "incorrect", rec[correct.eq(False).fillna(False).to_numpy(bool)]
    yield "all", rec


def statistics(records: pd.DataFrame, bins: np.ndarray = BINS, alpha: float = ALPHA) -> pd.DataFrame:
    """Table 4: one row per (map, kind, background, group) with the background image or lesion.

    - ``n_maps``, ``share_empty_maps`` (maps that are 0 everywhere: the class's logit gets no positive
      evidence anywhere);
    - ``intersection``, ``mean_fg``/``mean_bg``, ``std_fg``/``std_bg``: of the group's conditional PDFs,
      each the equal-weight average of the per-image PDFs (every image counts once; the std includes the
      spread between images); ``gap`` = mean_fg − mean_bg (also the mean of per-image gaps),
      ``gap_median`` the median per-image gap; ``auc`` the mean per-image pixel AUC (P(Fg pixel hotter
      than Bg pixel)); ``intersection_image_mean`` of the per-image intersections;
    - ``cohens_d_mean``/``_median``: per-image Cohen's d of z² (Fg minus Bg);
    - ``sig_ztest_*``: share of images whose one-sided pixel z-test (Fg hotter) is significant at `alpha`
      — uncorrected, Bonferroni, Benjamini–Hochberg, one family per (map, kind, background);
      ``sig_placement_*`` the same for the placement test, ``placements_median`` its number of placements;
    - ``mass_accuracy``, ``rank_accuracy``, ``pointing_game``: Quantus' localisation metrics (means).
    """
    rec = records[records["background"].isin(BACKGROUNDS[:2])]
    if rec.empty:
        return pd.DataFrame(columns=KEYS)
    rec = _flag_significance(rec, alpha)
    rows = []
    for m in MAPS:
        for kind in KINDS:
            for bg in BACKGROUNDS[:2]:
                sub = rec[(rec["map"] == m) & (rec["kind"] == kind) & (rec["background"] == bg)]
                if sub.empty:
                    continue
                rows += [{"map": m, "kind": kind, "background": bg, "group": g, **_column(s, bins)}
                         for g, s in _groups(sub)]
    return pd.DataFrame(rows)


def _paired(records: pd.DataFrame, baseline: str, column: str = "gap") -> pd.DataFrame:
    """The model's and a baseline's `column` side by side, one row per (run, image, output)."""
    key = ["run_dir", "image_id", "output"]
    model = records[records["map"] == "gradcam"].set_index(key)[column]
    other = records[records["map"] == baseline].set_index(key)[column]
    return pd.concat({"gradcam": model, baseline: other}, axis=1, join="inner")


def baselines(records: pd.DataFrame) -> pd.DataFrame:
    """The model against each baseline on the same maps, per (kind, background, baseline, statistic):
    ``gap`` (mean z in Fg − in Bg) and ``auc`` (P(Fg pixel hotter than Bg pixel), blind to the map's
    contrast); ``gradcam`` and ``baseline`` are the means, then ``paired_greater`` of the per-image values
    (``p_wilcoxon``: one-sided, the model's value larger)."""
    rows = []
    for kind in KINDS:
        for bg in BACKGROUNDS[:2]:
            rec = records[(records["kind"] == kind) & (records["background"] == bg)]
            for b in BASELINES:
                for column in ("gap", "auc"):
                    pairs = _paired(rec, b, column)
                    if pairs.empty:
                        continue
                    rows.append({"kind": kind, "background": bg, "baseline": b, "statistic": column,
                                 "gradcam": pairs["gradcam"].mean(), "baseline_value": pairs[b].mean(),
                                 **paired_greater(pairs["gradcam"], pairs[b])})
    return pd.DataFrame(rows, columns=["kind", "background", "baseline", "statistic", "gradcam", "baseline_value",
                                       "n_pairs", "mean_difference", "median_difference", "share_greater",
                                       "p_wilcoxon"])


def per_head(records: pd.DataFrame) -> pd.DataFrame:
    """Each pattern head's map in its own mask (``mean_own``) against the other patterns' masks of the same
    image (``mean_other``): one row per code with such images, then ``all`` codes pooled. ``p_wilcoxon``:
    one-sided, own above other across images; ``gap_centre``: the centre baseline's gap on the same masks
    (what position alone gives)."""
    rec = records[records["background"] == "other_patterns"]
    rows = []
    for code in [*CODES, "all"]:
        sub = rec if code == "all" else rec[rec["output"] == code]
        own = sub[sub["map"] == "gradcam"]
        if own.empty:
            continue
        test = paired_greater(own["mean_fg"], own["mean_bg"])
        rows.append({"output": code, "n_maps": len(own), "mean_own": own["mean_fg"].mean(),
                     "mean_other": own["mean_bg"].mean(), "gap": own["gap"].mean(),
                     "share_own_above": test["share_greater"], "p_wilcoxon": test["p_wilcoxon"],
                     "cohens_d_median": _nan_stat(own["cohens_d"], "median"),
                     "gap_centre": _nan_stat(_paired(sub, "centre")["centre"], "mean")})
    return pd.DataFrame(rows, columns=["output", "n_maps", "mean_own", "mean_other", "gap", "share_own_above",
                                       "p_wilcoxon", "cohens_d_median", "gap_centre"])


def faithfulness(twins: pd.DataFrame, road: pd.DataFrame) -> pd.DataFrame:
    """The deletion tests, one row each: ``test``, ``subject``, ``n``, ``mean``, ``median``,
    ``share_positive``, ``p_wilcoxon`` (one-sided, values above 0), ``mean_before``/``mean_after``.

    - twin_deletion: p(BCC) of the image minus p(BCC) of its pattern-free twin, for BCC and non-BCC
      images (share_positive = share whose p(BCC) falls);
    - road: ROAD combined score of the diagnosis map (Grad-CAM, then the centre baseline), and their
      difference per image.
    """
    rows = []

    def row(test: str, subject: str, values, before=np.nan, after=np.nan) -> None:
        t = paired_greater(values, np.zeros(len(values)))
        rows.append({"test": test, "subject": subject, "n": t["n_pairs"], "mean": t["mean_difference"],
                     "median": t["median_difference"], "share_positive": t["share_greater"],
                     "p_wilcoxon": t["p_wilcoxon"], "mean_before": before, "mean_after": after})

    if not twins.empty:
        for label, subject in ((1, "BCC images"), (0, "non-BCC images")):
            sub = twins[pd.to_numeric(twins["y_bcc"], errors="coerce").eq(label).to_numpy(bool)]
            if len(sub):
                row("twin_deletion", subject, (sub["p_image"] - sub["p_twin"]).to_numpy(),
                    sub["p_image"].mean(), sub["p_twin"].mean())
    if not road.empty:
        wide = road.pivot(index=["run_dir", "image_id"], columns="map", values="road")
        for m in [c for c in MAPS if c in wide.columns]:
            row("road", m, wide[m].dropna().to_numpy())
        if {"gradcam", "centre"} <= set(wide.columns):
            row("road", "gradcam - centre", (wide["gradcam"] - wide["centre"]).dropna().to_numpy())
    return pd.DataFrame(rows, columns=["test", "subject", "n", "mean", "median", "share_positive", "p_wilcoxon",
                                       "mean_before", "mean_after"])
