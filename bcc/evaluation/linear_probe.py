"""What the frozen features know: a linear probe's within-BCC AUROC per pattern, beside the heads'.

Stage 3 trains linear pattern heads on a frozen backbone, so its within-BCC AUROC
(``bcc.evaluation.within_bcc``) is bounded by what a linear read-out of the pooled features can reach.
The probe is that read-out fitted well: per BCC code, scikit-learn's logistic regression (standardised
features, L2, ``C``) on every training-fold image (train + validation) where the code is labelled,
scored by AUROC among the test fold's BCC lesions — the same rows and score as the heads'. It reads
the run's ``best.ckpt`` and the dataset's decoded images (the training cache), never the test labels
while fitting.

How to read it: heads well below the probe — stage 3 is under-trained (its lr, epochs); heads at the
probe and both low — the backbone carries too little of that pattern (its pretraining, the resolution,
the data), and no stage-3 setting will fix it.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from bcc.core.classification import roc_auc
from bcc.core.layout import BEST
from bcc.core.patterns import BCC_CODES, OUTPUTS
from bcc.core.predictions import predictions_frame
from bcc.data.images import Preprocess
from bcc.data.table import read_table, table_images
from bcc.models.activations import activations
from bcc.models.checkpoint import load_network


def probe_auroc(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
                c: float = 0.1) -> float:
    """AUROC on (`test_x`, `test_y`) of a logistic regression fitted on (`train_x`, `train_y`); NaN rows dropped,
    NaN when either side has one class only."""
    keep, held = ~np.isnan(train_y), ~np.isnan(test_y)
    y = train_y[keep].astype(int)
    if len(np.unique(y)) < 2:  # no labels (a code nobody rated) or one class: nothing to fit
        return float("nan")  # (roc_auc gives NaN for a one-class test side)
    model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=5000)).fit(train_x[keep], y)
    return roc_auc(test_y[held], model.decision_function(test_x[held]))


def run_features(run_dir: Path, images: np.ndarray, images_key: str, cache_dir: Path | None = None) -> np.ndarray:
    """(N, C) pooled features of ``run_dir/best.ckpt`` on `images` as its heads see them (no dropout), from the
    activations kept for that network (``bcc.models.activations``: the trunk a training run left in
    `cache_dir`, else one forward pass over the dataset, kept for the run's other probes)."""
    net = load_network(Path(run_dir) / BEST)
    return activations(net, images, "pooled", images_key, cache_dir=cache_dir)[0].numpy()


def probe_run(run_dir: Path, table: pd.DataFrame, images: np.ndarray, images_key: str, fold: int, c: float = 0.1,
              cache_dir: Path | None = None) -> dict[str, float]:
    """Per BCC code: the probe's within-BCC AUROC on test fold `fold` with the features of ``run_dir/best.ckpt``."""
    if not table.loc[table["bcc"] == 1, list(BCC_CODES)].notna().any().any():
        return {code: float("nan") for code in BCC_CODES}  # no BCC lesion has a pattern label: nothing to probe
    features = run_features(run_dir, images, images_key, cache_dir)
    test = (table["fold"] == fold).to_numpy()
    bcc = test & (table["bcc"] == 1).to_numpy()
    return {code: probe_auroc(features[~test], table.loc[~test, code].to_numpy(float),
                              features[bcc], table.loc[bcc, code].to_numpy(float), c)
            for code in BCC_CODES}


def probe_predictions(run_dirs: Mapping[int, Path], table: pd.DataFrame, images: np.ndarray, images_key: str,
                      outputs: Sequence[str] = OUTPUTS, c: float = 0.1, cache_dir: Path | None = None) -> pd.DataFrame:
    """A linear probe in the prediction-table layout (``bcc.core.predictions``): per fold, per output in
    `outputs` labelled with both classes on the training folds, a logistic regression on the frozen pooled
    features of that fold's run (``run_dirs``: fold → run folder), fitted on the training folds and scored on
    the test fold. Read by the same per-source tables as a model's predictions: on a stage-1 run of
    ImageNet weights, what ImageNet's features alone know (the issue's "linear probe" row)."""
    frames = []
    for fold, run_dir in sorted(run_dirs.items()):
        features = run_features(run_dir, images, images_key, cache_dir)
        test = (table["fold"] == fold).to_numpy()
        y = table[list(OUTPUTS)].to_numpy(np.float64)
        p = np.full((int(test.sum()), len(OUTPUTS)), np.nan)
        for j, o in enumerate(OUTPUTS):
            known = ~test & np.isfinite(y[:, j])
            if o not in outputs or len(np.unique(y[known, j])) < 2:
                continue
            model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=5000))
            p[:, j] = model.fit(features[known], y[known, j].astype(int)).predict_proba(features[test])[:, 1]
        frames.append(predictions_frame(table.loc[test, "image_id"], fold, y[test], p))
    return pd.concat(frames, ignore_index=True)


def linear_probe(runs: Sequence, dataset_root: str | Path, preprocess: Preprocess | int, c: float = 0.1,
                 allow_outside: bool = False) -> pd.DataFrame:
    """Per BCC code (and their mean): the probe's within-BCC AUROC, mean and sd over `runs` (one per fold)."""
    table = read_table(dataset_root, allow_outside=allow_outside)
    images, key = table_images(dataset_root, table, preprocess, allow_outside)
    cache = Path(dataset_root) / ".cache"
    per_fold = pd.DataFrame([probe_run(r.path, table, images, key, r.fold, c, cache) for r in runs])
    rows = [{"code": code, "auroc_probe": per_fold[code].mean(),
             "auroc_probe_sd": per_fold[code].std(ddof=1) if per_fold[code].count() > 1 else np.nan}
            for code in BCC_CODES]
    rows.append({"code": "mean", "auroc_probe": float(np.nanmean([r["auroc_probe"] for r in rows]))})
    return pd.DataFrame(rows)
