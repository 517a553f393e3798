"""Calibration of p(BCC) and the thresholds that turn probabilities into decisions.

* :func:`expected_calibration_error` — ECE with equal-width bins: Σ_b (n_b / n) · |mean(y)_b − mean(p)_b|.
* :func:`reliability_diagram` — observed BCC frequency per bin against the mean predicted probability.
* :func:`triage_operating_point` — the triage setting: the highest threshold reaching a target
  sensitivity (default 0.95). It is chosen *out of fold*: for test fold k on the pooled test predictions
  of the other folds, then applied to fold k, so no fold's threshold has seen its own labels. It reports
  the sensitivity and specificity reached and the share of cases *deprioritised* (p < threshold: cases
  a dermatologist could review later because the model puts them below the triage threshold).
* :func:`validation_thresholds` — ``eval.thresholds=val``: per fold and output, the threshold that
  maximises Youden's J (sensitivity + specificity − 1) on that fold's validation split
  (``val_predictions.csv`` next to ``predictions.csv``), never on the test fold.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from bcc.core.layout import VAL_PREDICTIONS
from bcc.core.patterns import OUTPUTS
from bcc.core.predictions import read_predictions
from bcc.evaluation.runs import MissingRunsError, Run


def calibration_bins(y, p, n_bins: int = 10) -> pd.DataFrame:
    """Per equal-width bin of [0, 1]: count, mean predicted probability, observed frequency (empty bins dropped).

    Bins are right-closed, (lo, hi] (the first one [0, hi]), as scikit-learn's ``calibration_curve``.
    """
    y, p = np.asarray(y, float), np.asarray(p, float)
    idx = np.searchsorted(np.linspace(0, 1, n_bins + 1)[1:-1], p)
    rows = [{"bin": b, "lo": b / n_bins, "hi": (b + 1) / n_bins, "count": int((idx == b).sum()),
             "confidence": float(p[idx == b].mean()), "frequency": float(y[idx == b].mean())}
            for b in range(n_bins) if (idx == b).any()]
    return pd.DataFrame(rows, columns=["bin", "lo", "hi", "count", "confidence", "frequency"])


def expected_calibration_error(y, p, n_bins: int = 10) -> float:
    bins = calibration_bins(y, p, n_bins)
    if bins.empty:
        return float("nan")
    w = bins["count"] / bins["count"].sum()
    return float((w * (bins["frequency"] - bins["confidence"]).abs()).sum())


def reliability_diagram(y, p, path: Path, n_bins: int = 10, title: str = "p(BCC) reliability") -> Path:
    bins = calibration_bins(y, p, n_bins)
    ece = expected_calibration_error(y, p, n_bins)
    fig, (ax, hx) = plt.subplots(2, 1, figsize=(4.5, 5.5), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=1, label="perfect calibration")
    ax.bar(bins["lo"], bins["frequency"], width=1 / n_bins, align="edge", alpha=0.6, edgecolor="k",
           label="observed BCC frequency")
    ax.plot(bins["confidence"], bins["frequency"], "o-", c="C3", ms=4, label="bin mean p")
    ax.set(ylabel="observed frequency", xlim=(0, 1), ylim=(0, 1), title=f"{title} — ECE {ece:.3f}")
    ax.legend(fontsize=7, loc="upper left")
    hx.hist(np.asarray(p, float), bins=np.linspace(0, 1, n_bins + 1), color="C0", edgecolor="k")
    hx.set(xlabel="predicted p(BCC)", ylabel="cases")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def threshold_for_sensitivity(y, p, target: float = 0.95) -> float:
    """The highest threshold t with sensitivity(p ≥ t) ≥ target (0.0 when there are no positives)."""
    y, p = np.asarray(y).astype(bool), np.asarray(p, float)
    pos = np.sort(p[y])[::-1]
    if len(pos) == 0:
        return 0.0
    need = int(np.ceil(target * len(pos) - 1e-9))  # positives that must be at or above t
    return float(pos[max(need, 1) - 1])


def triage_operating_point(predictions: pd.DataFrame, target: float = 0.95, output: str = "bcc") -> dict:
    """Out-of-fold operating point at `target` sensitivity, pooled over the folds (module docstring)."""
    df = predictions.dropna(subset=[f"y_{output}"])
    tp = fn = tn = fp = deprior = 0
    per_fold = {}
    for fold, test in df.groupby("fold"):
        rest = df[df["fold"] != fold]
        source = rest if len(rest) else test  # one fold only: in-sample, said in `oof`
        t = threshold_for_sensitivity(source[f"y_{output}"], source[f"p_{output}"], target)
        y = test[f"y_{output}"].to_numpy().astype(bool)
        hit = test[f"p_{output}"].to_numpy() >= t
        tp, fn = tp + int((y & hit).sum()), fn + int((y & ~hit).sum())
        tn, fp = tn + int((~y & ~hit).sum()), fp + int((~y & hit).sum())
        deprior += int((~hit).sum())
        per_fold[int(fold)] = t
    n = tp + fn + tn + fp
    nan = float("nan")
    return {"target_sensitivity": target, "threshold_mean": float(np.mean(list(per_fold.values()))) if per_fold else nan,
            "thresholds": per_fold, "sensitivity": tp / (tp + fn) if tp + fn else nan,
            "specificity": tn / (tn + fp) if tn + fp else nan, "deprioritised": deprior / n if n else nan,
            "missed_bcc": fn, "n": n, "oof": df["fold"].nunique() > 1}


def youden_threshold(y, p) -> float:
    """Threshold maximising sensitivity + specificity − 1 (0.5 when one class is absent); ties → the middle."""
    y, p = np.asarray(y).astype(bool), np.asarray(p, float)
    if y.all() or (~y).all():
        return 0.5
    cands = np.unique(p)
    sens = np.array([(p[y] >= t).mean() for t in cands])
    spec = np.array([(p[~y] < t).mean() for t in cands])
    j = sens + spec
    best = np.flatnonzero(j >= j.max() - 1e-12)
    i = best[len(best) // 2]
    # midway to the next lower score keeps the decision of the validation set but generalises better
    lower = cands[i - 1] if i > 0 else 0.0
    return float((cands[i] + lower) / 2)


def validation_thresholds(runs: list[Run]) -> dict[int, dict[str, float]]:
    """``eval.thresholds=val``: fold → output → Youden threshold from the fold's ``val_predictions.csv``."""
    missing = [r for r in runs if not (r.path / VAL_PREDICTIONS).is_file()]
    if missing:
        names = "\n  ".join(str(r.path / VAL_PREDICTIONS) for r in missing)
        raise MissingRunsError(
            f"eval.thresholds=val needs the validation-split predictions of every evaluated job, written by "
            f"training next to predictions.csv with the same columns (image_id,fold,y_bcc..y_AT,p_bcc..p_AT). "
            f"Missing:\n  {names}\nRe-run those jobs with a training version that writes {VAL_PREDICTIONS}, "
            f"or use eval.thresholds=0.5")
    out = {}
    for r in runs:
        val = read_predictions(r.path / VAL_PREDICTIONS, r.fold)
        out[r.fold] = {}
        for o in OUTPUTS:
            seen = val[f"y_{o}"].notna()
            out[r.fold][o] = youden_threshold(val.loc[seen, f"y_{o}"], val.loc[seen, f"p_{o}"])
    return out
