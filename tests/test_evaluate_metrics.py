"""Metric code of bcc.evaluation against scikit-learn, and fold aggregation on a hand-made fixture."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.calibration import calibration_curve
from sklearn.metrics import accuracy_score, precision_score, recall_score, roc_auc_score

from bcc.evaluation.calibration import (
    calibration_bins,
    expected_calibration_error,
    threshold_for_sensitivity,
    triage_operating_point,
)
from bcc.evaluation.clinical_metrics import (
    CLINICAL,
    ROW_BCC,
    ROW_DETECTION,
    ROW_NO_PATTERN,
    binary_metrics,
    format_table3,
    roc_auc,
    table3,
)
from bcc.models.calibration import youden_threshold
from tests.helpers.runs import BCC_ACC, DETECTION, NO_PATTERN_RECALL, fold_predictions


@pytest.fixture(params=[0, 1, 2])
def arrays(request):
    rng = np.random.default_rng(request.param)
    y = rng.integers(0, 2, 200)
    p = np.clip(0.35 * y + rng.random(200) * 0.65, 0, 1).round(2)  # ties on purpose
    return y, p


def test_binary_metrics_match_sklearn(arrays):
    y, p = arrays
    yhat = (p >= 0.5).astype(int)
    m = binary_metrics(y, yhat)
    assert m["recall"] == pytest.approx(recall_score(y, yhat))
    assert m["specificity"] == pytest.approx(recall_score(y, yhat, pos_label=0))
    assert m["precision"] == pytest.approx(precision_score(y, yhat))
    assert m["accuracy"] == pytest.approx(accuracy_score(y, yhat))


def test_undefined_metric_is_nan_like_sklearn_zero_division():
    m = binary_metrics([0, 0, 0], [0, 0, 0])
    assert np.isnan(m["recall"]) and np.isnan(m["precision"]) and m["specificity"] == 1.0
    assert np.isnan(recall_score([0, 0, 0], [0, 0, 0], zero_division=np.nan))


def test_roc_auc_is_undefined_without_both_classes(arrays):
    """sklearn raises on one class; a fold without positives must give NaN, which the fold mean skips."""
    y, p = arrays
    assert roc_auc(y, p) == pytest.approx(roc_auc_score(y, p))
    assert np.isnan(roc_auc(np.zeros(5), np.linspace(0, 1, 5))) and np.isnan(roc_auc(np.ones(3), [0.1, 0.2, 0.3]))
    assert np.isnan(roc_auc([], []))


def test_calibration_matches_sklearn(arrays):
    y, p = arrays
    frac, mean = calibration_curve(y, p, n_bins=10, strategy="uniform")
    bins = calibration_bins(y, p, 10)
    np.testing.assert_allclose(bins["frequency"], frac)
    np.testing.assert_allclose(bins["confidence"], mean)
    # ECE is torchmetrics': the same formula, its bins closed on the left of torch.linspace's edges (which
    # differ from numpy's in the last bit at 0.6 and 0.7: ties at those values fall the other way)
    edges = torch.linspace(0, 1, 11, dtype=torch.float64).numpy()
    left = np.searchsorted(edges, p, side="right") - 1
    ece = sum((left == b).mean() * abs(y[left == b].mean() - p[left == b].mean()) for b in np.unique(left))
    assert expected_calibration_error(y, p, 10) == pytest.approx(ece, abs=1e-6)
    assert expected_calibration_error([0, 1], [0.0, 1.0]) == 0.0


def test_thresholds():
    y, p = np.array([1, 1, 1, 1, 0, 0]), np.array([0.9, 0.8, 0.6, 0.2, 0.5, 0.1])
    assert threshold_for_sensitivity(y, p, 0.75) == 0.6   # 3 of 4 positives at or above it
    assert threshold_for_sensitivity(y, p, 0.95) == 0.2
    t = youden_threshold(y, p)
    assert ((p >= t) == np.array([1, 1, 1, 0, 0, 0], bool)).all() or ((p >= t) == (p >= 0.6)).all()


def test_triage_operating_point_is_out_of_fold():
    df = pd.concat([fold_predictions(f) for f in range(5)], ignore_index=True)
    op = triage_operating_point(df, 0.95)
    assert op["oof"] and set(op["thresholds"]) == set(range(5))
    # fold 1 and 2 hold the missed D (p 0.2): the other folds' threshold (0.2 as they include one of them) …
    assert 0 <= op["deprioritised"] <= 1 and op["n"] == 20
    assert op["sensitivity"] == pytest.approx(1.0)  # every fold's threshold reaches all BCC at 0.2 or 0.9


def test_fold_aggregation_on_hand_made_fixture():
    df = pd.concat([fold_predictions(f) for f in range(5)], ignore_index=True)
    summary, per_fold = table3(df, 0.5)
    bcc = per_fold[per_fold["row"] == ROW_BCC].sort_values("fold")
    np.testing.assert_allclose(bcc["accuracy"], BCC_ACC)
    row = summary.set_index("row").loc[ROW_BCC]
    assert row["accuracy_mean"] == pytest.approx(np.mean(BCC_ACC))
    assert row["accuracy_var"] == pytest.approx(np.var(BCC_ACC, ddof=1))  # 0.04375
    assert row["n"] == 20 and row["folds"] == 5
    det = summary[(summary["section"] == CLINICAL) & (summary["row"] == ROW_DETECTION)].iloc[0]
    assert det["accuracy_mean"] == pytest.approx(np.mean(DETECTION))     # 0.9
    assert det["n"] == 10                                                 # A and D in each fold
    nop = summary[summary["row"] == ROW_NO_PATTERN].iloc[0]
    assert nop["recall_mean"] == pytest.approx(np.mean(NO_PATTERN_RECALL))
    # fold 1: A predicts ON only → "any BCC pattern" still predicted: lesion-level recall stays 1
    assert det["recall_mean"] == pytest.approx(1.0)
    md = format_table3(summary)
    assert "| **Clinically-inspired XAI** |" in md and "0.80 (4.3" in md


def test_per_fold_thresholds_change_the_table():
    df = pd.concat([fold_predictions(f) for f in range(5)], ignore_index=True)
    per = {f: {"bcc": 0.15} for f in range(5)}  # D's 0.2 becomes a hit; C's 0.1 stays negative
    _summary, per_fold = table3(df, per)
    acc = per_fold[per_fold["row"] == ROW_BCC].sort_values("fold")["accuracy"].to_numpy()
    np.testing.assert_allclose(acc, [1.0, 1.0, 0.75, 0.75, 1.0])
