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

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from bcc.core.classification import roc_auc
from bcc.core.layout import BEST
from bcc.core.patterns import BCC_CODES
from bcc.data.cache import decoded_images
from bcc.data.images import Preprocess
from bcc.data.table import aspects, read_table
from bcc.models.checkpoint import load_network
from bcc.models.network import MultitaskNet


@torch.no_grad()
def pooled_features(net: MultitaskNet, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """(N, C) pooled backbone features of uint8 (N, H, W, 3) images, as the heads see them (no dropout)."""
    net.eval()
    out = [net.features(torch.from_numpy(np.ascontiguousarray(images[i:i + batch_size])).permute(0, 3, 1, 2)
                        .float().div_(255.0))
           for i in range(0, len(images), batch_size)]
    return torch.cat(out).numpy() if out else np.zeros((0, 0), np.float32)


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


_FEATURES: dict[tuple, np.ndarray] = {}


def run_features(run_dir: Path, images: np.ndarray) -> np.ndarray:
    """:func:`pooled_features` of ``run_dir/best.ckpt`` on `images`, kept for the run's other probes (the
    source probe reads the same features): one forward pass over the dataset per run."""
    key = (str(Path(run_dir).resolve()), images.__array_interface__["data"][0], images.shape)
    if key not in _FEATURES:
        while len(_FEATURES) >= 8:  # an experiment's folds (tens of MB each for a real dataset)
            _FEATURES.pop(next(iter(_FEATURES)))
        _FEATURES[key] = pooled_features(load_network(Path(run_dir) / BEST), images)
    return _FEATURES[key]


def probe_run(run_dir: Path, table: pd.DataFrame, images: np.ndarray, fold: int, c: float = 0.1) -> dict[str, float]:
    """Per BCC code: the probe's within-BCC AUROC on test fold `fold` with the features of ``run_dir/best.ckpt``."""
    if not table.loc[table["bcc"] == 1, list(BCC_CODES)].notna().any().any():
        return {code: float("nan") for code in BCC_CODES}  # no BCC lesion has a pattern label: nothing to probe
    features = run_features(run_dir, images)
    test = (table["fold"] == fold).to_numpy()
    bcc = test & (table["bcc"] == 1).to_numpy()
    return {code: probe_auroc(features[~test], table.loc[~test, code].to_numpy(float),
                              features[bcc], table.loc[bcc, code].to_numpy(float), c)
            for code in BCC_CODES}


def linear_probe(runs: Sequence, dataset_root: str | Path, preprocess: Preprocess | int, c: float = 0.1,
                 allow_outside: bool = False) -> pd.DataFrame:
    """Per BCC code (and their mean): the probe's within-BCC AUROC, mean and sd over `runs` (one per fold)."""
    table = read_table(dataset_root, allow_outside=allow_outside)
    images = decoded_images(Path(dataset_root), list(table["image"]), preprocess, allow_outside=allow_outside,
                            aspects=aspects(table))
    per_fold = pd.DataFrame([probe_run(r.path, table, images, r.fold, c) for r in runs])
    rows = [{"code": code, "auroc_probe": per_fold[code].mean(),
             "auroc_probe_sd": per_fold[code].std(ddof=1) if per_fold[code].count() > 1 else np.nan}
            for code in BCC_CODES]
    rows.append({"code": "mean", "auroc_probe": float(np.nanmean([r["auroc_probe"] for r in rows]))})
    return pd.DataFrame(rows)
