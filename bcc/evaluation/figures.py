"""Report figures: ROC per output, confusion matrices, per-pattern bars with the spread over folds.

ROC curves, AUCs and confusion counts are scikit-learn's. Each figure is saved as PNG and its path returned.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn.metrics import confusion_matrix, roc_curve

from bcc.core.classification import roc_auc
from bcc.core.io import atomic_path
from bcc.core.patterns import CODES, OUTPUTS, PAPER_NAMES, clinical_rule, rule_defined
from bcc.evaluation.clinical_metrics import (
    METRICS,
    PATTERNS,
    fold_thresholds,
    hard_predictions,
    thresholds_for,
    trained_codes,
)


def per_fold_auc(predictions: pd.DataFrame, output: str) -> np.ndarray:
    vals = []
    for _, d in predictions.groupby("fold"):
        d = d.dropna(subset=[f"y_{output}"])
        vals.append(roc_auc(d[f"y_{output}"], d[f"p_{output}"]))
    return np.array(vals)


def roc_figure(predictions: pd.DataFrame, path: Path, title: str = "") -> Path:
    """One panel per output: each fold's ROC (thin) and the pooled one (thick), AUC mean ± sd over folds."""
    fig, axes = plt.subplots(2, 4, figsize=(13, 6.5), sharex=True, sharey=True)
    for ax, o in zip(axes.ravel(), OUTPUTS, strict=True):
        for _, d in predictions.groupby("fold"):
            d = d.dropna(subset=[f"y_{o}"])
            if d[f"y_{o}"].nunique() == 2:  # a fold with one class has no ROC curve
                ax.plot(*roc_curve(d[f"y_{o}"], d[f"p_{o}"])[:2], lw=0.7, alpha=0.5)
        d = predictions.dropna(subset=[f"y_{o}"])
        aucs = per_fold_auc(predictions, o)
        if d[f"y_{o}"].nunique() == 2:
            ax.plot(*roc_curve(d[f"y_{o}"], d[f"p_{o}"])[:2], c="k", lw=2,
                    label=f"pooled AUC {roc_auc(d[f'y_{o}'], d[f'p_{o}']):.3f}")
        ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=0.8)
        ok = aucs[np.isfinite(aucs)]
        spread = f"AUC {ok.mean():.3f} ± {ok.std(ddof=1) if len(ok) > 1 else 0:.3f} over {len(ok)} folds" \
            if len(ok) else "AUC undefined (one class per fold)"
        ax.set_title(f"{PAPER_NAMES.get(o, 'BCC/non-BCC')} ({o})\n{spread}", fontsize=9)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="lower right")
    return save_output_grid(fig, axes, "1 − specificity", "sensitivity",
                            title or "ROC per output (thin: folds, thick: pooled)", path)


def save_figure(fig, path: Path, dpi: int = 110) -> Path:
    """Lay out, write and close a figure; the path back for the report's list. Written beside its place and
    renamed into it (its folder made), so a run stopped while drawing leaves no half-written picture."""
    path = Path(path)
    fig.tight_layout()
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=dpi, format=path.suffix.lstrip(".") or "png")
    finally:
        plt.close(fig)
    return path


def save_output_grid(fig, axes, xlabel: str, ylabel: str, title: str, path: Path) -> Path:
    """Label a grid of per-output panels (x on the bottom row, y on the left column), title and save it."""
    for ax in axes[-1]:
        ax.set_xlabel(xlabel)
    for ax in axes[:, 0]:
        ax.set_ylabel(ylabel)
    fig.suptitle(title)
    return save_figure(fig, path, dpi=100)


def confusion_figure(predictions: pd.DataFrame, path: Path, thresholds=0.5) -> Path:
    """Pooled over folds: the diagnosis head, the clinical rule on predicted patterns, and each code."""
    panels = []
    hats = []
    for fold, d in predictions.groupby("fold"):
        hats.append(hard_predictions(d, thresholds_for(fold_thresholds(thresholds, int(fold)))))
    hat = pd.concat(hats).loc[predictions.index]
    seen = predictions["y_bcc"].notna()
    panels.append(("BCC (diagnosis head)", predictions.loc[seen, "y_bcc"], hat.loc[seen, "yhat_bcc"]))
    known = trained_codes(predictions)
    rule = clinical_rule(hat[[f"yhat_{c}" for c in CODES]].to_numpy(), known)
    panels.append(("BCC (clinical rule)", predictions.loc[seen, "y_bcc"], rule[seen.to_numpy()])
                  if rule_defined(known) else ("BCC (clinical rule): not trained", None, None))
    for c, trained in zip(CODES, known, strict=True):
        s = predictions[f"y_{c}"].notna()
        panels.append((f"{PAPER_NAMES[c]} ({c})", predictions.loc[s, f"y_{c}"], hat.loc[s, f"yhat_{c}"])
                      if trained else (f"{PAPER_NAMES[c]} ({c}): not trained", None, None))
    fig, axes = plt.subplots(3, 3, figsize=(9, 9))
    for ax, (name, y, yh) in zip(axes.ravel(), panels, strict=True):
        if y is None or len(y) == 0:
            ax.set_title(name if y is None else f"{name}: no labels", fontsize=9)
            ax.axis("off")
            continue
        m = confusion_matrix(np.asarray(y, int), np.asarray(yh, int), labels=[0, 1])
        ax.imshow(m / max(m.sum(), 1), cmap="Blues", vmin=0, vmax=1)
        for (i, j), v in np.ndenumerate(m):
            ax.text(j, i, str(v), ha="center", va="center", fontsize=11,
                    color="white" if v > 0.6 * m.sum() else "black")
        ax.set(xticks=[0, 1], yticks=[0, 1], xticklabels=["pred 0", "pred 1"], yticklabels=["ref 0", "ref 1"])
        ax.set_title(name, fontsize=9)
    fig.suptitle("Confusion matrices, test folds pooled")
    return save_figure(fig, path, dpi=100)


def pattern_bars(per_fold: pd.DataFrame, path: Path, title: str = "") -> Path:
    """Per code and metric: the mean over folds (bar), ± sd (error bar) and each fold (dots)."""
    d = per_fold[per_fold["section"] == PATTERNS]
    rows = [PAPER_NAMES[c] for c in CODES]
    fig, ax = plt.subplots(figsize=(12, 4.2))
    width = 0.8 / len(METRICS)
    x = np.arange(len(rows))
    for i, m in enumerate(METRICS):
        vals = [d.loc[d["row"] == r, m].to_numpy(float) for r in rows]
        mean = [np.nanmean(v) if np.isfinite(v).any() else np.nan for v in vals]
        sd = [np.nanstd(v, ddof=1) if np.isfinite(v).sum() > 1 else 0 for v in vals]
        pos = x - 0.4 + width * (i + 0.5)
        ax.bar(pos, mean, width, yerr=sd, capsize=2, label=m, alpha=0.8)
        for p, v in zip(pos, vals, strict=True):
            ax.scatter(np.full(len(v), p), v, s=6, c="k", zorder=3)
    ax.set_xticks(x, [f"{r}\n({c})" for r, c in zip(rows, CODES, strict=True)], fontsize=8)
    ax.set(ylim=(0, 1.05), ylabel="test-fold value", title=title or "Pattern detection per code: mean ± sd over folds")
    ax.legend(ncol=4, fontsize=8, loc="lower right")
    return save_figure(fig, path, dpi=100)
