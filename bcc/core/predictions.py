"""The prediction table every job writes and every report reads: ``image_id, fold, y_<output>…, p_<output>…``.

``y_<output>`` is the reference label (0/1, blank where unknown) and ``p_<output>`` the predicted
probability (blank where the model's head for that output was never trained on its label: no
prediction, rather than an untrained head's noise), for every output of ``OUTPUTS`` (bcc, PN, U, ON, MG, ML, SW, AT). Test folds go to
``predictions.csv``, the validation slice of training to ``val_predictions.csv`` (``bcc.core.layout``).
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from bcc.core.errors import BadInput
from bcc.core.io import write_csv
from bcc.core.patterns import OUTPUTS

LABEL_COLUMNS = [f"y_{o}" for o in OUTPUTS]
PROB_COLUMNS = [f"p_{o}" for o in OUTPUTS]


def predictions_frame(image_ids: Sequence[str], fold: int, labels: np.ndarray, probs: np.ndarray) -> pd.DataFrame:
    """The table for `image_ids`: labels (N, 8) with NaN for unknown, probabilities (N, 8), OUTPUTS order."""
    labels, probs = np.asarray(labels, dtype=np.float64), np.asarray(probs)
    df = pd.DataFrame({"image_id": list(image_ids), "fold": int(fold)})
    for j, col in enumerate(LABEL_COLUMNS):
        df[col] = pd.array(np.where(np.isfinite(labels[:, j]), labels[:, j], np.nan)).astype("Int64")
    for j, col in enumerate(PROB_COLUMNS):
        df[col] = probs[:, j]
    return df


def write_predictions(df: pd.DataFrame, path: Path) -> Path:
    """Write a prediction table atomically (6 decimals: reruns are byte-identical)."""
    return write_csv(df, path, float_format="%.6f")


def read_predictions(path: Path, fold: int | None = None) -> pd.DataFrame:
    """A prediction table, checked for the columns; ``image_id`` stays text ("0042" is not 42)."""
    df = pd.read_csv(path, dtype={"image_id": str})
    missing = [c for c in ["image_id", *LABEL_COLUMNS, *PROB_COLUMNS] if c not in df.columns]
    if missing:
        raise BadInput(f"{path}: missing columns {missing}; expected image_id,fold,y_bcc..y_AT,p_bcc..p_AT")
    if "fold" not in df.columns:
        df.insert(1, "fold", fold)
    if fold is not None:
        df["fold"] = int(fold)
    return df
