"""Binary classification metrics, each from scikit-learn (training logs torchmetrics' equivalents).

Every figure that scores decisions or a ranking goes through these two functions, so a number means the
same in Table 3, the triage point, the per-source tables, Table 4, the int8 check and the guarantee's
simulation (they live in ``core`` so that ``evaluation`` and ``deploy`` both reach them):

* :func:`binary_metrics` — recall, specificity (recall of the negative class), precision and accuracy
  of 0/1 decisions; NaN where a denominator is 0 (``zero_division=nan``), never a silent 0.
* :func:`roc_auc` — ``roc_auc_score``; NaN where a class is absent (a fold without positives has no
  AUROC, and a mean over folds skips it).
"""
from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, precision_score, recall_score, roc_auc_score


def binary_metrics(y_true, y_pred) -> dict[str, float]:
    """Recall, specificity, precision and accuracy of 0/1 arrays, and their length ``n``."""
    y, p = np.asarray(y_true).astype(int), np.asarray(y_pred).astype(int)
    if len(y) == 0:
        return {"recall": np.nan, "specificity": np.nan, "precision": np.nan, "accuracy": np.nan, "n": 0}
    nan = {"zero_division": np.nan}
    return {"recall": float(recall_score(y, p, **nan)),
            "specificity": float(recall_score(y, p, pos_label=0, **nan)),
            "precision": float(precision_score(y, p, **nan)),
            "accuracy": float(accuracy_score(y, p)), "n": len(y)}


def roc_auc(y, score) -> float:
    """The ROC AUC of `score` against 0/1 labels `y`; NaN with fewer than two classes."""
    y = np.asarray(y).astype(bool)
    return float(roc_auc_score(y, np.asarray(score, float))) if 0 < y.sum() < len(y) else float("nan")
