"""Multilabel-stratified k-fold assignment on the seven codes and the BCC label (paper Sect. 2.4).

Uses iterative stratification (Sechidis et al.) from `iterative-stratification`. When images.csv has a
`group` column (e.g. one patient or lesion photographed several times), whole groups are stratified as
units — their labels OR-ed — so a group never spans two folds. With ``by_source`` (``--by-source``), each
source and its BCC images are strata too: a merged set of several datasets (HAM10000, Derm7pt, PH2)
then has every source, and the BCC of each, in every fold — what a per-source AUROC needs.

    python -m bcc.folds DATASET_DIR [--k 5] [--seed 0] [--by-source] [--allow-outside]
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from iterstrat.ml_stratifiers import MultilabelStratifiedKFold

from bcc.core.cli import ranged, run_command, tool_parser
from bcc.core.config import Range
from bcc.core.io import atomic_path, files_digest, write_csv
from bcc.core.log import get_logger
from bcc.core.patterns import CODES
from bcc.data.consensus import ensure_labels
from bcc.data.contract import load_image_table
from bcc.data.errors import DatasetError, warn
from bcc.data.stamps import describe_duplicates, duplicate_images

log = get_logger(__name__)

STRATA = [*list(CODES), "bcc"]


def strata(labels: pd.DataFrame, sources: pd.Series | None = None) -> pd.DataFrame:
    """The 0/1 columns folds (and the validation slice) are stratified on: the labelled STRATA, and with
    `sources` one column per source and one per source's BCC images."""
    known = [c for c in STRATA if labels[c].notna().any()]  # e.g. ISIC: only `bcc` is labelled
    y = labels[known].fillna(0).astype(int).reset_index(drop=True)
    if sources is not None and sources.nunique() > 1:
        src = sources.reset_index(drop=True).astype(str)
        for name in sorted(src.unique()):
            y[f"source={name}"] = src.eq(name).astype(int)
            if y["bcc"][src.eq(name)].any():
                y[f"bcc|source={name}"] = (src.eq(name) & y["bcc"].eq(1)).astype(int)
    return y


def assign_folds(labels: pd.DataFrame, k: int = 5, seed: int = 0, groups: pd.Series | None = None,
                 sources: pd.Series | None = None) -> np.ndarray:
    """Fold index per row of `labels` (columns STRATA), stratified on all of them at once (and on each
    source and its BCC when `sources` is given)."""
    if k < 2:
        raise DatasetError(f"--k must be at least 2, got {k}")
    table = strata(labels, sources)
    known, y = list(table.columns), table.to_numpy()
    positives = y.sum(axis=0)
    rare = [f"{c} ({n})" for c, n in zip(known, positives, strict=True) if n < k]
    if rare:
        raise DatasetError(f"fewer positives than folds (k={k}) for {', '.join(rare)}: some test folds would have "
                           f"none; lower --k or add positive images")
    keys = groups.to_numpy() if groups is not None else np.arange(len(labels))
    unit_ids, unit_of_row = np.unique(keys, return_inverse=True)
    unit_y = np.zeros((len(unit_ids), y.shape[1]), dtype=int)
    np.maximum.at(unit_y, unit_of_row, y)
    if len(unit_ids) < k:
        raise DatasetError(f"only {len(unit_ids)} groups/images for k={k} folds; lower --k")
    if unit_y.shape[1] == 1:  # iterstrat wants ≥2 label columns: a binary label plus its complement
        unit_y = np.hstack([unit_y, 1 - unit_y])
    splitter = MultilabelStratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    unit_fold = np.empty(len(unit_ids), dtype=int)
    for fold, (_, test) in enumerate(splitter.split(np.zeros((len(unit_ids), 1)), unit_y)):
        unit_fold[test] = fold
    return unit_fold[unit_of_row]


def units(images: pd.DataFrame, duplicates: list[list[str]]) -> pd.Series:
    """image_id → the unit it is stratified with: its ``group`` (or itself), merged with every group holding
    the same picture (:func:`contract.duplicate_images`), so neither a group nor a picture spans two folds."""
    own = images["group"].where(images["group"].ne(""), images["image_id"]) if "group" in images.columns \
        else images["image_id"]
    unit = dict(zip(images["image_id"], "g:" + own.astype(str), strict=True))
    parent: dict[str, str] = {}

    def find(u: str) -> str:
        while parent.get(u, u) != u:
            u = parent[u]
        return u

    for ids in duplicates:
        roots = sorted({find(unit[i]) for i in ids})
        for r in roots[1:]:
            parent[r] = roots[0]
    return pd.Series({i: find(u) for i, u in unit.items()}, name="unit")


def fold_table(labels: pd.DataFrame, folds: np.ndarray) -> pd.DataFrame:
    """Per-fold image counts and positives per stratum, with a total row."""
    df = labels[STRATA].fillna(0).astype(int).assign(fold=folds)
    table = df.groupby("fold")[STRATA].sum()
    table.insert(0, "images", df.groupby("fold").size())
    table.loc["total"] = table.sum()
    return table


def ensure_splits(root: Path, k: int = 5, seed: int = 0, verbose: bool = False,
                  allow_outside: bool = False, by_source: bool = False) -> pd.DataFrame:
    """Write (or reuse, when labels and parameters are unchanged) splits.csv with `image_id,fold`; the
    dataset is validated first (`consensus.ensure_labels`). `by_source`: stratify on the sources too."""
    root = Path(root)
    labels = ensure_labels(root, allow_outside=allow_outside)
    images = load_image_table(root, check_files=False, allow_outside=allow_outside)
    duplicates = duplicate_images(root, images)
    path, stamp = root / "splits.csv", root / ".splits.inputs.json"
    digest = files_digest(root / "labels.csv", root / "images.csv",
                          extra=f"k={k}/seed={seed}" + ("/by_source" if by_source else "")
                          + (f"/same={duplicates}" if duplicates else ""))
    if path.is_file() and stamp.is_file() and json.loads(stamp.read_text()).get("digest") == digest and not verbose:
        return pd.read_csv(path, dtype={"image_id": str})
    groups = None  # every image its own unit, in file order (the folds of a dataset without groups or copies)
    if "group" in images.columns or duplicates:
        groups = units(images, duplicates).reindex(labels["image_id"]).reset_index(drop=True)
    if verbose and duplicates:
        warn(describe_duplicates(root, duplicates))
    sources = images.set_index("image_id")["source"].reindex(labels["image_id"]) if by_source else None
    folds = assign_folds(labels, k=k, seed=seed, groups=groups, sources=sources)
    splits = pd.DataFrame({"image_id": labels["image_id"], "fold": folds})
    write_csv(splits, path)
    with atomic_path(stamp) as tmp:
        tmp.write_text(json.dumps({"digest": digest}))
    if verbose:
        log.info(f"{k}-fold multilabel-stratified split (seed {seed}) → {path}\n")
        log.info(fold_table(labels, folds).to_string())
        if by_source:
            src = images.set_index("image_id")["source"].reindex(labels["image_id"]).to_numpy()
            per = pd.crosstab(folds, [src, labels["bcc"].fillna(0).astype(int).to_numpy()],
                              rownames=["fold"], colnames=["source", "bcc"])
            log.info("\nper source (bcc 0 / 1):\n" + per.to_string())
    return splits


def main(argv: list[str] | None = None) -> int:
    parser = tool_parser("folds", "Multilabel-stratified k-fold split: writes splits.csv")
    parser.add_argument("dataset", type=Path, help="dataset directory (images.csv, annotations.csv)")
    parser.add_argument("--k", type=ranged(Range(int, 2, 100)), default=5)
    parser.add_argument("--seed", type=ranged(Range(int, 0, 2**32 - 1)), default=0)
    parser.add_argument("--by-source", action="store_true",
                        help="stratify on images.csv's source (and each source's BCC images) as well")
    parser.add_argument("--allow-outside", action="store_true",
                        help="read image and mask paths that lead outside the dataset directory")
    args = parser.parse_args(argv)

    def body() -> None:
        ensure_splits(args.dataset, k=args.k, seed=args.seed, verbose=True, allow_outside=args.allow_outside,
                      by_source=args.by_source)

    return run_command("bcc.folds", body, args.debug)
