"""Dawid–Skene EM consensus of multi-rater pattern labels (paper Sect. 2.2).

Each code is a binary task with its own class prior and, per rater, a 2×2 confusion matrix given by
sensitivity and specificity. Missing ratings (blank cells) simply drop out of the likelihood. All codes
and images are updated at once with array operations, so 10⁶ images cost seconds, not minutes.

    python -m bcc.consensus DATASET_DIR [--allow-outside]

A rater with fewer than ``MIN_RATINGS`` rated images of a code gets undefined (NaN) statistics for it,
with a note in ``rater_quality.csv``, the report and a warning; a code's Fleiss kappa that cannot be
computed says why.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from statsmodels.stats.inter_rater import fleiss_kappa

from bcc.core.cli import ranged, run_command, tool_parser
from bcc.core.config import Range
from bcc.core.io import atomic_path, files_digest, write_csv
from bcc.core.log import get_logger
from bcc.core.patterns import CODES, clinical_rule
from bcc.data.contract import Dataset, load_dataset
from bcc.data.errors import DatasetWarning, warn
from bcc.data.stamps import describe_duplicates

log = get_logger(__name__)

EPS = 1e-6
#: A rater needs this many rated images of a code for its sensitivity/specificity (and its place in that
#: code's Fleiss kappa) to mean anything: one rating shows a positive or a negative image, never both.
MIN_RATINGS = 2
QUALITY = "quality-v2"  # rater_quality.csv's layout (rated, note): an older file is rewritten


class RaterWarning(DatasetWarning):
    """A rater's statistics or a code's Fleiss kappa cannot be estimated; they are left undefined."""


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
    for it in range(1, max_iter + 1):  # noqa: B007 — the count of iterations is returned
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


def _kappa(r: np.ndarray) -> tuple[float, str]:
    """(Fleiss' κ, "") for one code's (images, raters) ratings, or (NaN, why it cannot be computed)."""
    counted = (~np.isnan(r)).sum(axis=0) >= MIN_RATINGS
    if counted.sum() < 2:
        return float("nan"), f"fewer than 2 raters with {MIN_RATINGS}+ ratings"
    r = r[:, counted]
    complete = ~np.isnan(r).any(axis=1)
    if complete.sum() < 2:
        return float("nan"), f"fewer than 2 images rated by all {int(counted.sum())} raters with {MIN_RATINGS}+ ratings"
    ones = r[complete].sum(axis=1)
    table = np.stack([r.shape[1] - ones, ones], axis=1)
    if (table.sum(axis=0) == 0).any():
        return float("nan"), "every rating is the same, so chance agreement is 1 and κ is 0/0"
    return float(fleiss_kappa(table)), ""


def fleiss_kappa_per_code(ratings: np.ndarray) -> dict[str, float]:
    """Fleiss' kappa per code over the raters with at least MIN_RATINGS ratings of it and the images all of
    them rated (statsmodels needs equal n); NaN where that leaves too little (:func:`kappa_undefined`)."""
    return {code: _kappa(ratings[:, :, c])[0] for c, code in enumerate(CODES)}


def kappa_undefined(ratings: np.ndarray) -> dict[str, str]:
    """code → why its Fleiss' kappa cannot be computed, for the codes where it cannot."""
    return {code: why for c, code in enumerate(CODES) if (why := _kappa(ratings[:, :, c])[1])}


def consensus_labels(dataset: Dataset, result: EMResult, ratings: np.ndarray) -> pd.DataFrame:
    """labels.csv content: hard labels, posteriors, and `bcc` by the clinical rule or the biopsy.

    A code nobody rated for an image stays blank (unknown, masked out of training), never a guess. Every
    image has a rated code or a diagnosis: `load_dataset` refuses one without either.
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
    labels["bcc"] = bcc.astype(int)
    return labels


def rater_quality(raters: list[str], result: EMResult, ratings: np.ndarray) -> pd.DataFrame:
    """rater_quality.csv: per rater and code the images rated, sensitivity, specificity and a note.

    A statistic is undefined (NaN, and the note says why) when the rater rated fewer than MIN_RATINGS
    images for the code, or when its rated images hold less than one image's worth of (consensus)
    positives — for sensitivity — or negatives — for specificity: the EM's estimate is then its clipped
    starting point, not a measurement.
    """
    rated = ~np.isnan(ratings)  # (images, raters, codes)
    n = rated.sum(axis=0)
    positives = np.einsum("irc,ic->rc", rated, result.posterior)
    negatives = n - positives
    rows = []
    for i, rater in enumerate(raters):
        for c, code in enumerate(CODES):
            sens, spec, note, count = result.sensitivity[i, c], result.specificity[i, c], "", int(n[i, c])
            if count < MIN_RATINGS:
                sens, spec = np.nan, np.nan
                note = "no ratings" if count == 0 else f"{count} rated image{'s' if count > 1 else ''}, fewer than {MIN_RATINGS}"
            else:
                missing = [what for what, evidence in (("positive", positives[i, c]), ("negative", negatives[i, c]))
                           if evidence < 1]
                if missing:
                    sens = np.nan if "positive" in missing else sens
                    spec = np.nan if "negative" in missing else spec
                    note = f"its ratings hold less than one {' or '.join(missing)} image's worth of consensus (EM posterior)"
            rows.append((rater, code, count, sens, spec, note))
    columns = ["rater", "code", "rated", "sensitivity", "specificity", "note"]
    return pd.DataFrame(rows, columns=columns).round({"sensitivity": 4, "specificity": 4})


def undefined_notes(ratings: np.ndarray, quality: pd.DataFrame) -> list[str]:
    """What cannot be estimated, and why: one line for the codes nobody rated (a public dataset labels few
    of the seven: said once, not once per rater), one per reason a rated code's Fleiss kappa is undefined,
    one per rater with an undefined statistic of a rated code (from :func:`rater_quality`)."""
    unrated = [code for c, code in enumerate(CODES) if np.isnan(ratings[:, :, c]).all()]
    out = [(f"{', '.join(unrated)}: rated by nobody, unknown for every image (masked out of training and of the "
           f"metrics; their heads stay untrained)")] if unrated else []
    by_reason: dict[str, list[str]] = {}
    for code, why in kappa_undefined(ratings).items():
        if code not in unrated:
            by_reason.setdefault(why, []).append(code)
    out += [f"Fleiss kappa undefined for {', '.join(codes)}: {why}" for why, codes in by_reason.items()]
    if len(unrated) == len(CODES):
        return out
    noted = quality[quality["note"].ne("") & ~quality["code"].isin(unrated)]
    for rater, rows in noted.groupby("rater", sort=False):
        if len(rows) == len(CODES) - len(unrated) and rows["note"].nunique() == 1:
            what = f"every {'rated ' if unrated else ''}code ({rows['note'].iloc[0]})"
        else:
            what = ", ".join(f"{code} ({note})" for code, note in zip(rows["code"], rows["note"], strict=True))
        out.append(f"rater {rater!r}: sensitivity/specificity undefined for {what}; NaN in rater_quality.csv")
    return out


def _stamp(root: Path) -> Path:
    return root / ".labels.inputs.json"


def ensure_labels(root: Path, tol: float = 1e-6, max_iter: int = 200, verbose: bool = False,
                  allow_outside: bool = False) -> pd.DataFrame:
    """Validate the dataset, then write (or reuse, when images.csv/annotations.csv are unchanged) labels.csv
    and rater_quality.csv. Validation runs every time (images decode once: `contract.DecodeStamp`), so an
    image broken after the labels were written is still caught here, not in training."""
    root = Path(root)
    dataset = load_dataset(root, allow_outside=allow_outside)
    digest = files_digest(root / "images.csv", root / "annotations.csv", extra=f"{tol}/{max_iter}/{QUALITY}")
    labels_path, quality_path = root / "labels.csv", root / "rater_quality.csv"
    stamp = _stamp(root)
    if labels_path.is_file() and quality_path.is_file() and stamp.is_file() \
            and json.loads(stamp.read_text()).get("digest") == digest and not verbose:
        return pd.read_csv(labels_path, dtype={"image_id": str})
    ratings, raters = ratings_array(dataset.annotations, dataset.images["image_id"])
    result = dawid_skene(ratings, tol=tol, max_iter=max_iter)
    labels = consensus_labels(dataset, result, ratings)
    quality = rater_quality(raters, result, ratings)
    write_csv(labels, labels_path)
    write_csv(quality, quality_path)
    with atomic_path(stamp) as tmp:
        tmp.write_text(json.dumps({"digest": digest}))
    if verbose:
        log.info(report(ratings, raters, result, labels, quality))
    if dataset.duplicates:
        warn(describe_duplicates(root, dataset.duplicates))
    for note in undefined_notes(ratings, quality):
        warn(note, RaterWarning)
    return labels


def _fmt(v: float) -> str:
    return "–" if pd.isna(v) else f"{v:.3f}"


def report(ratings: np.ndarray, raters: list[str], result: EMResult, labels: pd.DataFrame,
           quality: pd.DataFrame) -> str:
    """Rater-quality table, agreement and label counts, as printed by the CLI ("–" = undefined, with why)."""
    table = quality.pivot(index="rater", columns="code", values=["sensitivity", "specificity"])
    table = table.reindex(index=raters).reindex(columns=list(CODES), level=1).map(_fmt)
    kappa = fleiss_kappa_per_code(ratings)
    summary = pd.DataFrame({"Fleiss kappa": [_fmt(kappa[c]) for c in CODES],
                            "consensus positives": [str(int(v)) for v in labels[list(CODES)].sum()],
                            "prior": [_fmt(v) for v in result.prior]}, index=list(CODES)).T
    status = "converged" if result.converged else "hit the iteration cap"
    notes = undefined_notes(ratings, quality)
    undefined = "\n\n– = undefined:\n" + "\n".join(f"  {n}" for n in notes) if notes else ""
    return (f"Dawid–Skene EM: {len(labels)} images × {len(raters)} raters × {len(CODES)} codes, "
            f"{status} after {result.iterations} iterations\n\n"
            f"Rater quality (estimated):\n{table.to_string()}\n\n{summary.to_string()}\n"
            f"(Fleiss kappa over the raters with {MIN_RATINGS}+ ratings of a code, on the images all of them rated)"
            f"{undefined}\n\n"
            f"BCC {int(labels['bcc'].sum())} / non-BCC {int((1 - labels['bcc']).sum())}")


def main(argv: list[str] | None = None) -> int:
    parser = tool_parser("consensus", "Dawid–Skene consensus: writes labels.csv and rater_quality.csv")
    parser.add_argument("dataset", type=Path, help="dataset directory (images.csv, annotations.csv)")
    parser.add_argument("--tol", type=ranged(Range(float, 0, 1, low_open=True)), default=1e-6)
    parser.add_argument("--max-iter", type=ranged(Range(int, 1, 1_000_000)), default=200)
    parser.add_argument("--allow-outside", action="store_true",
                        help="read image and mask paths that lead outside the dataset directory")
    args = parser.parse_args(argv)

    def body() -> None:
        ensure_labels(args.dataset, tol=args.tol, max_iter=args.max_iter, verbose=True,
                      allow_outside=args.allow_outside)

    return run_command("bcc.consensus", body, args.debug)
