"""Within-BCC AUROC (do the pattern heads know the patterns beyond "BCC"?) and the linear probe beside it."""
from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from bcc.cli import evaluate as evaluate_cli
from bcc.core.patterns import BCC_CODES
from bcc.data.table import read_table, table_images
from bcc.evaluation.linear_probe import probe_auroc, probe_run, run_features
from bcc.evaluation.pipeline import evaluate
from bcc.evaluation.report import write_report
from bcc.evaluation.within_bcc import within_bcc_auroc
from bcc.models.checkpoint import load_network


def _predictions(rng: np.random.Generator, folds: int = 2, n: int = 200) -> pd.DataFrame:
    """BCC lesions (and some non-BCC) where p_U is the U label plus noise and p_ON a copy of p_bcc."""
    rows = []
    for fold in range(folds):
        y_bcc = rng.random(n) < 0.7
        u = (rng.random(n) < 0.5) & y_bcc
        p_bcc = np.clip(0.5 + 0.3 * y_bcc + 0.2 * rng.standard_normal(n), 0, 1)
        d = {"image_id": [f"{fold}-{i}" for i in range(n)], "fold": fold, "y_bcc": y_bcc.astype(int), "p_bcc": p_bcc}
        for code in BCC_CODES:
            d[f"y_{code}"] = ((rng.random(n) < 0.4) & y_bcc).astype(float)
            d[f"p_{code}"] = rng.random(n)
        d["y_U"], d["p_U"] = u.astype(float), np.clip(u + 0.3 * rng.standard_normal(n), 0, 1)
        d["p_ON"] = p_bcc
        rows.append(pd.DataFrame(d))
    return pd.concat(rows, ignore_index=True)


def test_within_bcc_separates_a_pattern_head_from_a_second_bcc_detector():
    t = within_bcc_auroc(_predictions(np.random.default_rng(0))).set_index("code")
    assert t.loc["U", "auroc_head"] > 0.85 and t.loc["U", "gap"] > 0.3
    # p_ON is p(BCC) itself: exactly the baseline, no gap
    assert t.loc["ON", "auroc_head"] == pytest.approx(t.loc["ON", "auroc_p_bcc"]) and t.loc["ON", "gap"] == pytest.approx(0)
    assert t.loc["U", "folds"] == 2 and t.loc["mean", "auroc_head"] == pytest.approx(t.loc[list(BCC_CODES), "auroc_head"].mean())


def test_within_bcc_uses_bcc_lesions_only():
    preds = _predictions(np.random.default_rng(1))
    non_bcc = preds["y_bcc"] == 0
    preds.loc[non_bcc, "p_U"] = 1.0  # a head firing on every non-BCC lesion changes nothing among BCC lesions
    assert within_bcc_auroc(preds).equals(within_bcc_auroc(_predictions(np.random.default_rng(1))))


def test_probe_reads_a_linear_feature_and_scores_only_with_the_test_labels():
    rng = np.random.default_rng(0)
    y = (rng.random(400) < 0.5).astype(float)
    x = rng.standard_normal((400, 16))
    x[:, 3] += 2 * y
    train, test = slice(0, 300), slice(300, 400)
    a = probe_auroc(x[train], y[train], x[test], y[test])
    assert a > 0.9
    # the test labels only score the fitted model: flipped, the AUROC is its complement
    assert probe_auroc(x[train], y[train], x[test], 1 - y[test]) == pytest.approx(1 - a)
    # features without the label: near chance
    noise = rng.standard_normal((400, 16))
    assert abs(probe_auroc(noise[train], y[train], noise[test], y[test]) - 0.5) < 0.15
    unlabelled = y.copy()
    unlabelled[:150] = np.nan  # NaN (not rated) rows are left out of the fit and the score
    assert np.isfinite(probe_auroc(x[train], unlabelled[train], x[test], y[test]))
    assert np.isnan(probe_auroc(x[train], np.zeros(300), x[test], y[test]))  # one class: undefined, not 0.5
    # a code nobody rated (the public sets' U..SW): no training label at all, NaN and no fit
    assert np.isnan(probe_auroc(x[train], np.full(300, np.nan), x[test], y[test]))


def test_run_features_are_what_the_heads_read(ckpt, data_dir):
    net = load_network(ckpt).eval()
    table = read_table(data_dir / "synthetic-smoke").iloc[:10]
    images, key = table_images(data_dir / "synthetic-smoke", table, 32)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        expected = net(x)
    got = net.head_logits(torch.from_numpy(run_features(ckpt.parent, images, key)))
    assert torch.allclose(got, expected, atol=1e-5)


def test_probe_never_fits_on_the_test_fold(ckpt, data_dir):
    root = data_dir / "synthetic-smoke"
    table = read_table(root)
    images, key = table_images(root, table, 32)
    before = probe_run(ckpt.parent, table, images, key, fold=0)
    flipped = table.copy()
    test = flipped["fold"] == 0
    flipped.loc[test, list(BCC_CODES)] = 1 - flipped.loc[test, list(BCC_CODES)]
    after = probe_run(ckpt.parent, flipped, images, key, fold=0)
    defined = [c for c in BCC_CODES if np.isfinite(before[c])]
    assert defined and all(after[c] == pytest.approx(1 - before[c]) for c in defined)


def test_eval_reports_the_probe_beside_the_heads(ckpt, data_dir, tmp_path):
    out = tmp_path / "outputs"
    shutil.copytree(ckpt.parent.parent.parent.parent, out, ignore=shutil.ignore_patterns("last.ckpt", "csv"))
    args = [f"output_dir={out}", "wandb.enabled=false", "eval.complexity=false", "eval.table4=null", "eval.stage=0",
            "eval.k=1", f"eval.dataset={data_dir / 'synthetic-smoke'}"]
    ev = evaluate(evaluate_cli.load_config(args))
    t = pd.read_csv(ev.report_dir / "within_bcc.csv").set_index("code")
    table = read_table(data_dir / "synthetic-smoke")
    direct = probe_run(ckpt.parent, table, *table_images(data_dir / "synthetic-smoke", table, 32), 0)
    for code in BCC_CODES:
        assert t.loc[code, "auroc_probe"] == pytest.approx(direct[code], nan_ok=True)
    assert "`auroc_probe`: a logistic regression" in (ev.report_dir / "report.md").read_text()
    off = evaluate(evaluate_cli.load_config([*args, "eval.linear_probe=false", f"report_dir={tmp_path / 'r2'}"]))
    assert "auroc_probe" not in pd.read_csv(off.report_dir / "within_bcc.csv").columns
    assert "not computed (eval.linear_probe=false)" in (off.report_dir / "report.md").read_text()
    # the report's verdict on heads against probe, by how far apart they are and the stage
    mean = ev.results[0].within_bcc["code"] == "mean"
    for head, stage, verdict in ((0.68, 3, "the heads reach what the frozen features hold"),
                                 (0.55, 3, "their training (stage 3's lr, epochs) is the limit"),
                                 (0.50, 2, "stages 1-2 leave the pattern heads as initialised")):
        ev.stage = stage
        ev.results[0].within_bcc.loc[mean, ["auroc_head", "auroc_probe"]] = head, 0.69
        text = write_report(ev).read_text()
        assert f"mean 0.690 against the heads' {head:.3f}" in text and verdict in text, verdict
