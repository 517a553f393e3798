"""The confounder checks of a multi-source dataset and Grad-CAM on whole-lesion masks, on hand-made inputs."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bcc.core.patterns import CODES, OUTPUTS
from bcc.evaluation.lesion_focus import picture_records, summarise
from bcc.evaluation.sources import ALL, per_source, rule_on_labels, shortcut_baselines


def _sources_table(seed: int = 0) -> pd.DataFrame:
    """400 pictures: source "a" has 30 % BCC, "b" 2 %, "c" none; 5 folds."""
    rng = np.random.default_rng(seed)
    src = np.repeat(["a", "b", "c"], [100, 250, 50])
    bcc = np.concatenate([rng.random(100) < 0.3, rng.random(250) < 0.02, np.zeros(50, bool)]).astype(int)
    bcc[100] = 1  # "b" has at least one BCC
    return pd.DataFrame({"image_id": [f"i{k}" for k in range(400)], "source": src, "bcc": bcc,
                         "fold": np.arange(400) % 5, **{c: np.nan for c in CODES}})


def test_a_source_detector_scores_pooled_but_not_within_a_source():
    table = _sources_table()
    p = table["source"].map({"a": 0.9, "b": 0.2, "c": 0.1}).to_numpy()  # knows the source, nothing of BCC
    preds = pd.DataFrame({"image_id": table["image_id"], "fold": table["fold"], "y_bcc": table["bcc"], "p_bcc": p})
    rows = per_source(preds, table.set_index("image_id")["source"]).set_index("source")
    assert rows.loc[ALL, "auroc_pooled"] > 0.75
    assert rows.loc["a", "auroc_pooled"] == pytest.approx(0.5) and rows.loc["b", "auroc_pooled"] == pytest.approx(0.5)
    assert np.isnan(rows.loc["c", "auroc_pooled"])  # one class: no AUROC
    assert rows.loc["a", "n"] == 100 and rows.loc["a", "positives"] == table.loc[table["source"] == "a", "bcc"].sum()


def test_shortcut_baselines_are_fitted_on_the_other_folds():
    table = _sources_table()
    rng = np.random.default_rng(1)
    images = rng.integers(0, 255, (len(table), 16, 16, 3), dtype=np.uint8)
    images[table["bcc"].to_numpy() == 1] //= 2  # BCC pictures darker: the colour baseline can see it
    b = shortcut_baselines(table, images).set_index(["baseline", "source"])
    assert b.loc[("source prior", ALL), "auroc_mean"] > 0.75
    assert b.loc[("source prior", "a"), "auroc_mean"] == pytest.approx(0.5)  # one score per source and fold
    assert b.loc[("colour statistics", "a"), "auroc_mean"] > 0.9


def test_the_rule_over_the_labelled_codes():
    table = pd.DataFrame({"image_id": list("abcd"), "source": ["d7"] * 4, "bcc": [1, 0, 1, 0],
                          "PN": [0, 1, 0, 0], "AT": [1, 0, 0, 1], **{c: np.nan for c in ("U", "ON", "MG", "ML", "SW")}})
    row = rule_on_labels(table).set_index("source").loc["d7"]
    assert row["codes"] == "PN+AT"
    assert (row["recall"], row["specificity"]) == (0.5, 0.5)  # BCC without AT missed; AT without BCC called


def test_lesion_mass_against_the_baselines():
    lesion = np.zeros((40, 60), bool)
    lesion[10:30, 20:40] = True
    on = np.zeros((len(OUTPUTS), 40, 60))
    on[0, 12:28, 22:38] = 1.0
    corner = np.zeros((len(OUTPUTS), 40, 60))
    corner[0, 0:5, 10:15] = 1.0  # the top-left corner of the view
    view = (0, 10, 40, 40)  # a centre crop of the 60 px width
    r_on, = picture_records(on, lesion, view, ["bcc"], grid=(4, 4))
    r_off, = picture_records(corner, lesion, view, ["bcc"], grid=(4, 4))
    assert r_on["share"] == pytest.approx(1.0) and r_on["peak_in_lesion"] and not r_on["peak_on_border"]
    assert r_off["share"] == 0.0 and not r_off["peak_in_lesion"] and r_off["peak_on_border"]
    assert r_off["peak_x"] < 0.1 and r_off["peak_y"] < 0.1
    assert r_on["uniform"] == pytest.approx(400 / 1600)  # the lesion's share of the view
    assert r_on["uniform"] < r_on["centre"] < 1.0 and r_on["lesion"] == 1.0
    s = summarise(pd.DataFrame([r_on, r_off])).set_index("output").loc["bcc"]
    assert s["peaks_off_lesion"] == 1 and s["beats_centre"] == 0.5


def test_the_seed_spread_covers_finished_seed_runs_only(tmp_path):
    from bcc.evaluation.seeds import seed_spread
    from tests.helpers.runs import write_runs

    out = write_runs(tmp_path / "real", stages=(3,))
    write_runs(out / "seeds" / "seed1", stages=(3,))
    write_runs(out / "seeds" / "seed2", stages=(3,), folds=range(3))  # unfinished: 3 of 5 folds
    assert seed_spread(tmp_path / "nothing", "mobilenet", 3, 5) is None
    table = seed_spread(out, "mobilenet", 3, 5).set_index("run")
    assert list(table.index) == ["this run", "seed1", "mean", "sd"]
    assert table.loc["mean", "bcc_auroc"] == pytest.approx(table.loc["this run", "bcc_auroc"])
    assert table.loc["sd", "bcc_auroc"] == pytest.approx(0.0)
    assert {"PN_auroc", "AT_auroc"} <= set(table.columns)
