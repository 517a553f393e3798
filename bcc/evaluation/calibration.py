"""Calibration of the outputs and the thresholds that turn probabilities into decisions.

* :func:`expected_calibration_error` — ECE with equal-width bins (torchmetrics' binary calibration
  error, L1: Σ_b (n_b / n) · |mean(y)_b − mean(p)_b|; its bins are closed on the left, those of the
  reliability diagrams on the right — scikit-learn's ``calibration_curve`` — they differ only at ties).
* :func:`calibration_per_output` — ECE of every output before and after its temperature and bias (fitted on each
  fold's validation slice by training, ``calibration.json``), on the pooled test folds.
* :func:`reliability_diagram` / :func:`reliability_grid` — observed frequency per bin against the mean
  predicted probability (p(BCC); every output before/after its scaling).
* :func:`triage_operating_point` — the triage setting: the highest threshold reaching a target
  sensitivity (default 0.95). It is chosen *out of fold*: for test fold k on the pooled test predictions
  of the other folds, then applied to fold k, so no fold's threshold has seen its own labels. It reports
  the sensitivity and specificity reached and the share of cases *deprioritised* (p < threshold: cases
  a dermatologist could review later because the model puts them below the triage threshold). The
  threshold is ``models.calibration.threshold_for_sensitivity`` (scikit-learn's ROC curve), the rates
  ``core.classification.binary_metrics`` of the pooled decisions.
* :func:`read_calibrations` — per fold, the thresholds, temperatures and biases training fitted on that fold's
  validation slice (never the test fold).
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from sklearn.calibration import CalibrationDisplay, calibration_curve
from sklearn.metrics import confusion_matrix
from torchmetrics.functional.classification import binary_calibration_error

from bcc.core.classification import binary_metrics
from bcc.core.layout import CALIBRATION
from bcc.core.patterns import OUTPUTS, PAPER_NAMES
from bcc.evaluation.figures import save_figure, save_output_grid
from bcc.evaluation.runs import MissingRunsError, Run
from bcc.models.calibration import calibrated, threshold_for_sensitivity


def expected_calibration_error(y, p, n_bins: int = 10) -> float:
    """ECE of probabilities `p` against 0/1 labels `y` (torchmetrics, equal-width bins); NaN when empty."""
    if len(y) == 0:
        return float("nan")
    # torch.tensor copies: pandas hands out read-only views, which torch.as_tensor warns about.
    return float(binary_calibration_error(torch.tensor(np.asarray(p, float)),
                                          torch.tensor(np.asarray(y, float)).long(), n_bins=n_bins, norm="l1"))


def reliability_diagram(y, p, path: Path, n_bins: int = 10, title: str = "p(BCC) reliability") -> Path:
    """scikit-learn's reliability curve (observed frequency per non-empty bin against its mean predicted
    probability) over a histogram of the predictions."""
    ece = expected_calibration_error(y, p, n_bins)
    fig, (ax, hx) = plt.subplots(2, 1, figsize=(4.5, 5.5), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    CalibrationDisplay.from_predictions(np.asarray(y, int), np.asarray(p, float), n_bins=n_bins, ax=ax,
                                        name="bin mean p", c="C3", ms=4)
    ax.set(ylabel="observed frequency", xlabel="", xlim=(0, 1), ylim=(0, 1), title=f"{title} — ECE {ece:.3f}")
    ax.legend(fontsize=7, loc="upper left")
    hx.hist(np.asarray(p, float), bins=np.linspace(0, 1, n_bins + 1), color="C0", edgecolor="k")
    hx.set(xlabel="predicted p(BCC)", ylabel="cases")
    return save_figure(fig, path)


def triage_operating_point(predictions: pd.DataFrame, target: float = 0.95, output: str = "bcc") -> dict:
    """Out-of-fold operating point at `target` sensitivity, pooled over the folds (module docstring)."""
    df = predictions.dropna(subset=[f"y_{output}"])
    per_fold, decided = {}, []
    for fold, test in df.groupby("fold"):
        rest = df[df["fold"] != fold]
        source = rest if len(rest) else test  # one fold only: in-sample, said in `oof`
        per_fold[int(fold)] = threshold_for_sensitivity(source[f"y_{output}"], source[f"p_{output}"], target)
        decided.append(test.assign(hit=test[f"p_{output}"] >= per_fold[int(fold)]))
    pooled = pd.concat(decided) if decided else df.assign(hit=False)
    y, hit = pooled[f"y_{output}"].to_numpy(int), pooled["hit"].to_numpy(int)
    rates = binary_metrics(y, hit)
    missed = int(confusion_matrix(y, hit, labels=[0, 1])[1, 0]) if len(y) else 0
    nan = float("nan")
    return {"target_sensitivity": target, "threshold_mean": float(np.mean(list(per_fold.values()))) if per_fold else nan,
            "thresholds": per_fold, "sensitivity": rates["recall"], "specificity": rates["specificity"],
            "deprioritised": float((1 - hit).mean()) if len(y) else nan, "missed_bcc": missed, "n": len(y),
            "oof": df["fold"].nunique() > 1}


def read_calibrations(runs: list[Run]) -> dict[int, dict[str, dict]]:
    """fold → output → {threshold, temperature, bias, ...}: what training fitted on the fold's validation slice."""
    missing = [r for r in runs if not (r.path / CALIBRATION).is_file()]
    if missing:
        names = "\n  ".join(str(r.path / CALIBRATION) for r in missing)
        raise MissingRunsError(
            f"the validation thresholds and scalings are missing — training writes {CALIBRATION} beside "
            f"best.ckpt (fitted on the validation slice). Missing:\n  {names}\nRe-run those jobs, or use "
            f"eval.thresholds=0.5")
    return {r.fold: json.loads((r.path / CALIBRATION).read_text())["outputs"] for r in runs}


def thresholds_of(calibrations: Mapping[int, Mapping[str, Mapping]]) -> dict[int, dict[str, float]]:
    """fold → output → validation threshold."""
    return {f: {o: float(c[o]["threshold"]) for o in OUTPUTS} for f, c in calibrations.items()}


def scaled_on_validation(predictions: pd.DataFrame, calibrations: Mapping[int, Mapping[str, Mapping]]) -> pd.DataFrame:
    """Test predictions with each fold's own temperatures and biases applied (fitted on that fold's validation
    slice)."""
    return pd.concat([calibrated(df, calibrations[int(fold)]) for fold, df in predictions.groupby("fold")]
                     ).loc[predictions.index]


def calibration_per_output(predictions: pd.DataFrame, scaled: pd.DataFrame | None, n_bins: int = 10) -> pd.DataFrame:
    """Per output: ECE of the pooled test predictions, raw and (when `scaled`) after the validation scaling."""
    rows = []
    for o in OUTPUTS:
        seen = predictions[f"y_{o}"].notna()
        y = predictions.loc[seen, f"y_{o}"]
        row = {"output": o, "n": int(seen.sum()), "positives": int(y.sum()),
               "ece": expected_calibration_error(y, predictions.loc[seen, f"p_{o}"], n_bins)}
        if scaled is not None:
            row["ece_scaled"] = expected_calibration_error(y, scaled.loc[seen, f"p_{o}"], n_bins)
        rows.append(row)
    return pd.DataFrame(rows)


def reliability_grid(predictions: pd.DataFrame, scaled: pd.DataFrame | None, path: Path, n_bins: int = 10,
                     title: str = "") -> Path:
    """One reliability panel per output: raw and scaled on validation (when given), ECE in the legend."""
    fig, axes = plt.subplots(2, 4, figsize=(14, 7), sharex=True, sharey=True)
    for ax, o in zip(axes.ravel(), OUTPUTS, strict=True):
        seen = predictions[f"y_{o}"].notna()
        y = predictions.loc[seen, f"y_{o}"]
        ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=1)
        for name, df, c in (("raw", predictions, "C0"), ("scaled", scaled, "C3")):
            if df is None or not seen.any():  # an output without labels here (an external set's codes): no curve
                continue
            p = df.loc[seen, f"p_{o}"]
            frequency, confidence = calibration_curve(y, p, n_bins=n_bins)
            ax.plot(confidence, frequency, "o-", c=c, ms=3,
                    label=f"{name}: ECE {expected_calibration_error(y, p, n_bins):.3f}")
        ax.set_title(f"{PAPER_NAMES.get(o, 'BCC/non-BCC')} ({o}), n={int(seen.sum())}", fontsize=9)
        if seen.any():
            ax.legend(fontsize=7, loc="upper left")
        else:
            ax.text(0.5, 0.5, "no labels", ha="center", va="center", fontsize=9, color="grey")
    return save_output_grid(fig, axes, "predicted probability", "observed frequency",
                            title or "Reliability per output, test folds pooled", path)
