"""The evaluation's metrics (scikit-learn, torchmetrics) on hand-counted cases, the operating points against
their definitions, and fold aggregation on a hand-made fixture."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from bcc.core.classification import binary_metrics, roc_auc
from bcc.evaluation.calibration import expected_calibration_error, triage_operating_point
from bcc.evaluation.clinical_metrics import (
    CLINICAL,
    ROW_BCC,
    ROW_DETECTION,
    ROW_NO_PATTERN,
    format_table3,
    table3,
)
from bcc.models.calibration import threshold_for_sensitivity, youden_threshold
from tests.helpers.runs import BCC_ACC, DETECTION, NO_PATTERN_RECALL, fold_predictions


@pytest.fixture(params=[0, 1, 2])
def arrays(request):
    rng = np.random.default_rng(request.param)
    y = rng.integers(0, 2, 200)
    p = np.clip(0.35 * y + rng.random(200) * 0.65, 0, 1).round(2)  # ties on purpose
    return y, p


def test_binary_metrics_on_a_hand_counted_table():
    """tp 3, fn 1, tn 2, fp 2: each rate from its own cells (specificity is the negatives' recall)."""
    y = [1, 1, 1, 1, 0, 0, 0, 0]
    yhat = [1, 1, 1, 0, 0, 0, 1, 1]
    assert binary_metrics(y, yhat) == {"recall": 3 / 4, "specificity": 2 / 4, "precision": 3 / 5,
                                       "accuracy": 5 / 8, "n": 8}


def test_undefined_metric_is_nan_never_zero():
    m = binary_metrics([0, 0, 0], [0, 0, 0])
    assert np.isnan(m["recall"]) and np.isnan(m["precision"]) and m["specificity"] == 1.0
    assert all(np.isnan(v) for k, v in binary_metrics([], []).items() if k != "n")


def test_roc_auc_is_undefined_without_both_classes():
    """A fold without positives must give NaN (scikit-learn raises), which the fold mean skips."""
    # pairs (pos, neg): 0.9 beats all 3, 0.5 beats 0.1 and ties 0.5 (half), loses to 0.7 -> (3 + 1.5) / 6
    assert roc_auc([1, 1, 0, 0, 0], [0.9, 0.5, 0.1, 0.5, 0.7]) == pytest.approx(4.5 / 6)
    assert np.isnan(roc_auc(np.zeros(5), np.linspace(0, 1, 5))) and np.isnan(roc_auc(np.ones(3), [0.1, 0.2, 0.3]))
    assert np.isnan(roc_auc([], []))


def test_expected_calibration_error(arrays):
    """torchmetrics' ECE is the formula on its bins, closed on the left of torch.linspace's edges (which
    differ from numpy's in the last bit at 0.6 and 0.7: ties at those values fall the other way)."""
    y, p = arrays
    edges = torch.linspace(0, 1, 11, dtype=torch.float64).numpy()
    left = np.searchsorted(edges, p, side="right") - 1
    ece = sum((left == b).mean() * abs(y[left == b].mean() - p[left == b].mean()) for b in np.unique(left))
    assert expected_calibration_error(y, p, 10) == pytest.approx(ece, abs=1e-6)
    assert expected_calibration_error([0, 1], [0.0, 1.0]) == 0.0


def test_operating_points_on_a_hand_made_case():
    y, p = np.array([1, 1, 1, 1, 0, 0]), np.array([0.9, 0.8, 0.6, 0.2, 0.5, 0.1])
    assert threshold_for_sensitivity(y, p, 0.75) == 0.6   # 3 of 4 positives at or above it
    assert threshold_for_sensitivity(y, p, 0.95) == 0.2
    assert threshold_for_sensitivity(np.zeros(3), [0.1, 0.2, 0.3], 0.95) == 0.0  # no positive: keep every case
    assert youden_threshold(y, p) == pytest.approx((0.6 + 0.5) / 2)  # J = 3/4 + 1 - 1 at 0.6, midway to 0.5
    assert youden_threshold([1, 1], [0.2, 0.3]) == 0.5  # one class: the default


@pytest.mark.parametrize("target", [0.5, 0.9, 0.95, 1.0])
def test_threshold_for_sensitivity_is_the_highest_reaching_the_target(arrays, target):
    """Against the definition, over every candidate (ties included)."""
    y, p = arrays
    ok = [t for t in np.unique(p) if (p[y == 1] >= t).mean() >= target]
    assert threshold_for_sensitivity(y, p, target) == max(ok)


def test_youden_threshold_against_the_definition(arrays):
    """The middle of the scores maximising sensitivity + specificity, midway down to the next lower score."""
    y, p = arrays
    cands = np.unique(p)
    j = np.array([(p[y == 1] >= t).mean() + (p[y == 0] < t).mean() for t in cands])
    best = np.flatnonzero(j >= j.max() - 1e-12)
    i = best[len(best) // 2]
    assert youden_threshold(y, p) == (cands[i] + (cands[i - 1] if i else 0.0)) / 2


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


def test_clinical_rows_judge_only_the_trained_codes():
    """The public sets label PN and AT only: a lesion with both 0 counts as "no pattern" and an AT-positive
    BCC enters the detection rate, although U…SW are unknown (blank) — never read as 0, never as missing."""
    from bcc.core.patterns import CODES

    rows = []
    for i, (y_bcc, y_pn, y_at, p_pn, p_at) in enumerate([(1, 0, 1, 0.1, 0.9),   # AT shown, detected
                                                         (1, 0, 1, 0.1, 0.2),   # AT shown, missed
                                                         (0, 0, 0, 0.2, 0.1),   # no pattern, predicted none
                                                         (0, 1, 0, 0.8, 0.1)]):  # PN
        row = {"image_id": f"x{i}", "fold": 0, "y_bcc": y_bcc, "p_bcc": 0.9 if y_bcc else 0.1}
        for c in CODES:
            row[f"y_{c}"], row[f"p_{c}"] = {"PN": (y_pn, p_pn), "AT": (y_at, p_at)}.get(c, (np.nan, np.nan))
        rows.append(row)
    summary, _ = table3(pd.DataFrame(rows), 0.5)
    s = summary.set_index("row")
    assert s.loc[ROW_DETECTION, "accuracy_mean"] == pytest.approx(0.5) and s.loc[ROW_DETECTION, "n"] == 2
    assert s.loc[ROW_NO_PATTERN, "recall_mean"] == pytest.approx(1.0) and s.loc[ROW_NO_PATTERN, "n"] == 4
    untrained = pd.DataFrame(rows).assign(p_AT=np.nan)  # no BCC pattern trained: the row says so
    s = table3(untrained, 0.5)[0].set_index("row")
    assert s.loc[ROW_DETECTION, "note"] == "not trained"


def test_a_figure_is_written_whole_or_not_at_all(tmp_path, monkeypatch):
    """Every figure of the report goes through save_figure: its folder is made, the picture is a PNG, and a
    write that fails part-way leaves neither the picture nor a temporary file behind, and the figure closed."""
    import matplotlib.pyplot as plt

    from bcc.evaluation.figures import save_figure

    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    path = save_figure(fig, tmp_path / "figures" / "line.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and not plt.fignum_exists(fig.number)

    fig, _ = plt.subplots()

    def breaks(target, **kwargs):
        Path(target).write_bytes(b"\x89PNG half")
        raise OSError("disk full")

    monkeypatch.setattr(fig, "savefig", breaks)
    with pytest.raises(OSError, match="disk full"):
        save_figure(fig, tmp_path / "figures" / "broken.png")
    assert sorted(p.name for p in (tmp_path / "figures").iterdir()) == ["line.png"]
    assert not plt.fignum_exists(fig.number)
