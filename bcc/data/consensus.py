"""Dawid–Skene EM consensus of multi-rater pattern labels (paper Sect. 2.2).

Each code is a binary task with its own class prior and, per rater, a 2×2 confusion matrix given by
sensitivity and specificity. Missing ratings (blank cells) simply drop out of the likelihood. All codes
and images are updated at once with array operations, so 10⁶ images cost seconds, not minutes.

    python -m bcc.consensus DATASET_DIR
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from statsmodels.stats.inter_rater import fleiss_kappa

from bcc.core.cli import run_command, tool_parser
from bcc.core.io import atomic_path, files_digest, write_csv
from bcc.core.patterns import CODES, clinical_rule
from bcc.data.contract import Dataset, DatasetError, load_dataset

EPS = 1e-6


def ratings_array(annotations: pd.DataFrame, image_ids: pd.Series) -> tuple[np.ndarray, list[str]]:
    """Annotations → float array (images, raters, codes) with NaN where a rater gave no rating."""
    raters = sorted(annotations["rater"].unique())
    i = pd.Index(image_ids).get_indexer(annotations["image_id"])
    r = pd.Index(raters).get_indexer(annotations["rater"])
    values = annotations[list(CODES)].replace("", np.nan).astype(float).to_numpy()
    out = np.full((len(image_ids), len(raters), len(CODES)), np.nan)
    out[i, r] = values
    return out, raters


@dataclass
class EMResult:
    posterior: np.ndarray  # (images, codes) P(code present)
    prior: np.ndarray  # (codes,)
    sensitivity: np.ndarray  # (raters, codes)
    specificity: np.ndarray  # (raters, codes)
    iterations: int
    converged: bool


def majority_vote(ratings: np.ndarray) -> np.ndarray:
    """Share of available raters saying 'present' (0.5 on ties); NaN where nobody rated."""
    with np.errstate(invalid="ignore", divide="ignore"):
        counts = (~np.isnan(ratings)).sum(axis=1)
        return np.where(counts > 0, np.nansum(ratings, axis=1) / np.maximum(counts, 1), np.nan)


def dawid_skene(ratings: np.ndarray, tol: float = 1e-6, max_iter: int = 200) -> EMResult:
    """Binary Dawid–Skene EM per code on a (images, raters, codes) array of 0/1/NaN.

    Both steps are matrix products over the flattened (rater, code) axis, so each iteration is a few BLAS
    calls whatever the number of images.
    """
    n, r, c = ratings.shape
    said1 = (ratings == 1).reshape(n, r * c).astype(np.float32)
    said0 = (ratings == 0).reshape(n, r * c).astype(np.float32)
    said0_total, rated_total = said0.sum(axis=0, dtype=np.float64), (said1 + said0).sum(axis=0, dtype=np.float64)
    code_of = np.tile(np.arange(c), r)  # flattened column → its code
    spread = np.eye(c, dtype=np.float32)[code_of]  # (r*c, c): sums each code's raters in the E-step
    post = majority_vote(ratings)
    rated_any = ~np.isnan(post)
    fill = np.where(rated_any.any(axis=0), np.nansum(post, axis=0) / np.maximum(rated_any.sum(axis=0), 1), 0.5)
    post = np.where(np.isnan(post), fill, post).astype(np.float32)
    converged = False
    for it in range(1, max_iter + 1):
        # M-step: prior and each rater's sensitivity/specificity from the current soft labels.
        prior = np.clip(post.mean(axis=0, dtype=np.float64), EPS, 1 - EPS)
        pos1 = (post.T @ said1)[code_of, np.arange(r * c)].astype(np.float64)
        pos0 = (post.T @ said0)[code_of, np.arange(r * c)].astype(np.float64)
        sens = np.clip(pos1 / np.maximum(pos1 + pos0, EPS), EPS, 1 - EPS)
        spec = np.clip((said0_total - pos0) / np.maximum(rated_total - pos1 - pos0, EPS), EPS, 1 - EPS)
        # E-step: log-odds of presence given every available rating.
        w1 = (np.log(sens) - np.log1p(-spec)).astype(np.float32)[:, None] * spread
        w0 = (np.log1p(-sens) - np.log(spec)).astype(np.float32)[:, None] * spread
        log_odds = said1 @ w1 + said0 @ w0 + np.float32(np.log(prior) - np.log1p(-prior))
        new = 1.0 / (1.0 + np.exp(-log_odds))
        delta = float(np.abs(new - post).max())
        post = new
        if delta < tol:
            converged = True
            break
    return EMResult(post.astype(np.float64), prior, sens.reshape(r, c), spec.reshape(r, c), it, converged)


def fleiss_kappa_per_code(ratings: np.ndarray) -> dict[str, float]:
    """Fleiss' kappa per code over the images every rater rated for that code (statsmodels needs equal n)."""
    out = {}
    for c, code in enumerate(CODES):
        r = ratings[:, :, c]
        complete = ~np.isnan(r).any(axis=1)
        ones = r[complete].sum(axis=1)
        table = np.stack([r.shape[1] - ones, ones], axis=1)
        out[code] = float(fleiss_kappa(table)) if complete.sum() > 1 else float("nan")
    return out


def consensus_labels(dataset: Dataset, result: EMResult, ratings: np.ndarray) -> pd.DataFrame:
    """labels.csv content: hard labels, posteriors, and `bcc` by the clinical rule or the biopsy.

    A code nobody rated for an image stays blank (unknown, masked out of training), never a guess.
    """
    rated = (~np.isnan(ratings)).any(axis=1)
    hard = np.where(rated, result.posterior >= 0.5, np.nan)
    labels = pd.DataFrame(hard, columns=list(CODES)).astype("Int64")
    labels.insert(0, "image_id", dataset.images["image_id"].to_numpy())
    for c, code in enumerate(CODES):
        labels[f"p_{code}"] = np.where(rated[:, c], np.round(result.posterior[:, c], 6), np.nan)
    bcc = clinical_rule(np.nan_to_num(hard)).astype(float)
    bcc[~rated.any(axis=1)] = np.nan
    if "diagnosis" in dataset.images.columns:
        biopsy = pd.to_numeric(dataset.images["diagnosis"].replace("", np.nan)).to_numpy()
        bcc = np.where(np.isnan(biopsy), bcc, biopsy)
    if np.isnan(bcc).any():
        first = dataset.images["image_id"].iloc[int(np.flatnonzero(np.isnan(bcc))[0])]
        raise DatasetError(f"{dataset.root / 'annotations.csv'}: image {first!r} has every code blank and no "
                           f"diagnosis in images.csv, so it has no label; rate it or give its diagnosis")
    labels["bcc"] = bcc.astype(int)
    return labels


def rater_quality(raters: list[str], result: EMResult) -> pd.DataFrame:
    rows = [(r, code, result.sensitivity[i, c], result.specificity[i, c])
            for i, r in enumerate(raters) for c, code in enumerate(CODES)]
    return pd.DataFrame(rows, columns=["rater", "code", "sensitivity", "specificity"]).round(4)


def _stamp(root: Path) -> Path:
    return root / ".labels.inputs.json"


def ensure_labels(root: Path, tol: float = 1e-6, max_iter: int = 200, verbose: bool = False) -> pd.DataFrame:
    """Write (or reuse, when images.csv/annotations.csv are unchanged) labels.csv and rater_quality.csv."""
    root = Path(root)
    if not ((root / "images.csv").is_file() and (root / "annotations.csv").is_file()):
        load_dataset(root)  # raises the DatasetError that names the missing directory or file
    digest = files_digest(root / "images.csv", root / "annotations.csv", extra=f"{tol}/{max_iter}")
    labels_path, quality_path = root / "labels.csv", root / "rater_quality.csv"
    stamp = _stamp(root)
    if labels_path.is_file() and quality_path.is_file() and stamp.is_file() \
            and json.loads(stamp.read_text()).get("digest") == digest and not verbose:
        return pd.read_csv(labels_path, dtype={"image_id": str})
    dataset = load_dataset(root)
    ratings, raters = ratings_array(dataset.annotations, dataset.images["image_id"])
    result = dawid_skene(ratings, tol=tol, max_iter=max_iter)
    labels = consensus_labels(dataset, result, ratings)
    quality = rater_quality(raters, result)
    write_csv(labels, labels_path)
    write_csv(quality, quality_path)
    with atomic_path(stamp) as tmp:
        tmp.write_text(json.dumps({"digest": digest}))
    if verbose:
        print(report(ratings, raters, result, labels))
    return labels


def report(ratings: np.ndarray, raters: list[str], result: EMResult, labels: pd.DataFrame) -> str:
    """Rater-quality table, agreement and label counts, as printed by the CLI."""
    q = rater_quality(raters, result)
    table = q.pivot(index="rater", columns="code", values=["sensitivity", "specificity"])
    table = table.reindex(columns=list(CODES), level=1)
    kappa = pd.Series(fleiss_kappa_per_code(ratings), name="Fleiss kappa")
    counts = labels[list(CODES)].sum().rename("consensus positives")
    summary = pd.concat([kappa.round(3), counts, pd.Series(result.prior.round(3), index=list(CODES), name="prior")],
                        axis=1).T
    status = "converged" if result.converged else "hit the iteration cap"
    return (f"Dawid–Skene EM: {len(labels)} images × {len(raters)} raters × {len(CODES)} codes, "
            f"{status} after {result.iterations} iterations\n\n"
            f"Rater quality (estimated):\n{table.round(3).to_string()}\n\n{summary.to_string()}\n\n"
            f"BCC {int(labels['bcc'].sum())} / non-BCC {int((1 - labels['bcc']).sum())}")


def main(argv: list[str] | None = None) -> int:
    parser = tool_parser("consensus", "Dawid–Skene consensus: writes labels.csv and rater_quality.csv")
    parser.add_argument("dataset", type=Path, help="dataset directory (images.csv, annotations.csv)")
    parser.add_argument("--tol", type=float, default=1e-6)
    parser.add_argument("--max-iter", type=int, default=200)
    args = parser.parse_args(argv)

    def body() -> None:
        ensure_labels(args.dataset, tol=args.tol, max_iter=args.max_iter, verbose=True)

    return run_command("bcc.consensus", body, args.debug)
