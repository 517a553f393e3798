"""Issue 24's measurements: the fold ensemble against each fold on the same held-out images, the guaranteed
threshold by simulation, and the folds' disagreement as a review flag.

    .venv/bin/python experiments/ensemble/run.py RUN_DIR HOLDOUT_DIR [--stage 3] [--out experiments/ensemble]

RUN_DIR is ``<output_dir>/<backbone>`` of a k-fold run (``fold<k>/stage<s>/best.ckpt`` and its test-fold
``predictions.csv``); HOLDOUT_DIR a labelled dataset none of the folds trained on (for the synthetic demo:
``python -m bcc.data.synthetic --out data/synthetic-holdout --n 800 --seed 1`` then ``python -m
bcc.consensus data/synthetic-holdout``). Writes ``report.md`` and its CSVs to ``--out``:

1. ``models.csv`` — every fold's ONNX model and the ensemble's (``bcc.export``'s code) on all holdout images:
   AUROC with a paired bootstrap 95 % interval of (ensemble − that fold), ECE, Brier score, accuracy at
   0.5, images/s at batch 32 on 2 threads (the models timed in turn, medians).
2. ``guarantee.csv`` — ``bcc.deploy.guarantee.simulate`` on the folds' out-of-fold predictions, 1000 random
   calibration/test splits per row: the population guarantee (calibration shares 0.5 and 0.2) and the
   batch guarantee, beside the empirical point; and the same on the ensemble's holdout scores.
3. ``disagreement.csv`` — the holdout split in halves: the threshold guaranteed on one, applied to the other;
   the cases whose folds fall on both sides of it, their share and their error rate against the rest.
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import brier_score_loss

from bcc.core.classification import roc_auc
from bcc.data.table import read_table
from bcc.deploy.ensemble import export_ensemble
from bcc.deploy.guarantee import guaranteed_threshold, simulate
from bcc.deploy.guarantee_calibration import model_scores
from bcc.deploy.int8 import dataset_images
from bcc.deploy.onnx_export import export_onnx
from bcc.deploy.onnx_model import INPUT_NAME, OUTPUT_NAME, ort_session
from bcc.evaluation.calibration import expected_calibration_error

EPS, DELTA, SPLITS = 0.05, 0.1, 1000


def bootstrap_gain(y: np.ndarray, a: np.ndarray, b: np.ndarray, n: int = 1000, seed: int = 0) -> tuple[float, float]:
    """95 % interval of AUROC(a) − AUROC(b) over paired bootstrap resamples of the cases."""
    rng = np.random.default_rng(seed)
    d = []
    for _ in range(n):
        i = rng.integers(0, len(y), len(y))
        d.append(roc_auc(y[i], a[i]) - roc_auc(y[i], b[i]))
    return float(np.nanpercentile(d, 2.5)), float(np.nanpercentile(d, 97.5))


def latency(models: dict[str, Path], x: np.ndarray, repeat: int = 7) -> dict[str, float]:
    """images/s of each model at batch len(x), 2 threads, run in turn (the machine is shared), medians."""
    sessions = {k: ort_session(p, 2) for k, p in models.items()}
    times = {k: [] for k in models}
    for s in sessions.values():
        s.run([OUTPUT_NAME], {INPUT_NAME: x})
    for _ in range(repeat):
        for k, s in sessions.items():
            t = time.perf_counter()
            s.run([OUTPUT_NAME], {INPUT_NAME: x})
            times[k].append(time.perf_counter() - t)
    return {k: len(x) / statistics.median(v) for k, v in times.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("run", type=Path)
    p.add_argument("holdout", type=Path)
    p.add_argument("--stage", type=int, default=3)
    p.add_argument("--out", type=Path, default=Path("experiments/ensemble"))
    a = p.parse_args()
    torch.set_num_threads(2)
    a.out.mkdir(parents=True, exist_ok=True)
    ckpts = sorted(a.run.glob(f"fold*/stage{a.stage}/best.ckpt"))
    singles = {c.parts[-3]: export_onnx(c, c.with_suffix(".onnx"), verbose=False) for c in ckpts}
    ens = export_ensemble(ckpts, a.run / f"ensemble-stage{a.stage}.onnx", verbose=False)
    table = read_table(a.holdout, splits=False)
    y = table["bcc"].to_numpy().astype(int)
    size = int(torch.load(ckpts[0], map_location="cpu", weights_only=True)["hyper_parameters"]["network"]["image_size"])
    x = dataset_images(a.holdout, size)
    p_ens, p_folds = model_scores(ens, x)
    scores = {**{k: model_scores(m, x)[0] for k, m in singles.items()}, "ensemble": p_ens}
    speed = latency({**singles, "ensemble": ens}, np.ascontiguousarray(x[:32]))
    rows = []
    for k, s in scores.items():
        lo, hi = bootstrap_gain(y, p_ens, s) if k != "ensemble" else (np.nan, np.nan)
        rows.append({"model": k, "auroc": roc_auc(y, s), "ensemble_gain_ci_low": lo, "ensemble_gain_ci_high": hi,
                     "ece": expected_calibration_error(y, s), "brier": brier_score_loss(y, s),
                     "accuracy_0.5": float(((s >= 0.5) == y).mean()), "images_per_s": speed[k]})
    models = pd.DataFrame(rows)
    models.to_csv(a.out / "models.csv", index=False, float_format="%.4f")

    oof = pd.concat([pd.read_csv(f) for f in sorted(a.run.glob(f"fold*/stage{a.stage}/predictions.csv"))])
    sims = []
    for name, (yy, pp) in {"out-of-fold (folds' test predictions)": (oof["y_bcc"].to_numpy(), oof["p_bcc"].to_numpy()),
                           "ensemble on the holdout": (y, p_ens)}.items():
        for share, batch in ((0.5, False), (0.2, False), (0.5, True)):
            r = simulate(yy, pp, EPS, DELTA, SPLITS, share, batch)
            for method in ("guaranteed", "empirical"):
                sims.append({"predictions": name, "n": len(yy), "n_bcc": int(yy.sum()), "calibration_share": share,
                             "guarantee": ("batch of the test BCC cases" if batch else "population")
                             if method == "guaranteed" else "none (empirical point)", "method": method,
                             **r[method]})
    guarantee = pd.DataFrame(sims).drop_duplicates(subset=["predictions", "calibration_share", "guarantee"])
    guarantee.to_csv(a.out / "guarantee.csv", index=False, float_format="%.4f")

    rng = np.random.default_rng(0)
    half = rng.permutation(len(y)) < len(y) // 2
    g = guaranteed_threshold(y[half], p_ens[half], EPS, DELTA)
    test = ~half
    kept = p_ens[test] >= g.threshold
    split = (p_folds[test] >= g.threshold).any(1) & (p_folds[test] < g.threshold).any(1)
    wrong = kept != y[test].astype(bool)
    dis = pd.DataFrame([{"threshold": g.threshold, "n_test": int(test.sum()), "sensitivity": kept[y[test] == 1].mean(),
                         "deprioritised": 1 - kept.mean(), "flagged_by_fold_split": split.mean(),
                         "error_rate_flagged": wrong[split].mean() if split.any() else np.nan,
                         "error_rate_not_flagged": wrong[~split].mean(),
                         "missed_bcc_flagged": int((split & ~kept & (y[test] == 1)).sum()),
                         "missed_bcc_total": int((~kept & (y[test] == 1)).sum()),
                         "spread_auroc_for_errors": roc_auc(wrong, p_folds[test].max(1) - p_folds[test].min(1))}])
    dis.to_csv(a.out / "disagreement.csv", index=False, float_format="%.4f")
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        print(models.to_string(index=False), "\n")
        print(guarantee.to_string(index=False), "\n")
        print(dis.to_string(index=False))


if __name__ == "__main__":
    main()
