"""Is the BCC AUROC about BCC, or about which dataset a picture came from?

A merged real set (HAM10000, Derm7pt, PH2) is a confounder trap: PH2 has no BCC, Derm7pt's crops look
unlike HAM's photographs, so a model that only recognised the source would score a pooled AUROC without
seeing any BCC. What this module measures, every number on the test folds of the runs (fitted on the
other folds only, never on a test fold):

- :func:`per_source`: the AUROC of p(BCC) *within* each source with both classes — a source cue is
  worth nothing there — per fold (mean ± sd) and pooled, beside the pooled all-source AUROC.
- :func:`heads_by_source`: the labelled pattern heads (PN, AT on these sets) per source and pooled.
- :func:`shortcut_baselines`: what shortcuts score on the same folds: *source prior* (p = the BCC rate of
  the picture's source in the training folds: a perfect source detector that knows nothing of BCC) and
  *colour statistics* (a logistic regression on whole-picture colour statistics of the network's input).
- :func:`source_probe`: how well a logistic regression on the frozen features (the run's ``best.ckpt``)
  names the source: balanced accuracy on the test fold, beside chance.
- :func:`rule_on_labels`: the clinical rule over the consensus codes a source labels (PN, AT), against the
  biopsy, where both are known: the ceiling of the rule with those codes alone.
- :func:`held_out_sources`: leave-one-source-out runs (``data.test_source``): the AUROC on a source the
  model never saw.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from bcc.core.classification import binary_metrics, roc_auc
from bcc.core.layout import METRICS, PREDICTIONS, find_jobs, stage_dir
from bcc.core.patterns import CODES, clinical_rule
from bcc.core.predictions import read_predictions
from bcc.data.images import Preprocess
from bcc.data.synthetic.audit import colour_features
from bcc.data.table import read_table, table_images
from bcc.evaluation.linear_probe import probe_predictions, run_features

ALL = "all sources"


def _auroc_rows(preds: pd.DataFrame, output: str, groups: pd.Series) -> list[dict]:
    """AUROC of `output` per fold (mean, sd) and pooled, for each group of `groups` (aligned with `preds`)
    and for all of them together."""
    rows = []
    for name, mask in [(ALL, np.ones(len(preds), bool))] + [(g, (groups == g).to_numpy()) for g in sorted(groups.unique())]:
        d = preds[mask & preds[f"y_{output}"].notna().to_numpy() & preds[f"p_{output}"].notna().to_numpy()]
        y = d[f"y_{output}"].astype(int)
        per_fold = [roc_auc(f[f"y_{output}"].astype(int), f[f"p_{output}"]) for _, f in d.groupby("fold")]
        ok = np.array([a for a in per_fold if np.isfinite(a)])
        rows.append({"output": output, "source": name, "n": len(d), "positives": int(y.sum()),
                     "auroc_pooled": roc_auc(y, d[f"p_{output}"]) if len(d) else float("nan"),
                     "auroc_mean": float(ok.mean()) if len(ok) else float("nan"),
                     "auroc_sd": float(ok.std(ddof=1)) if len(ok) > 1 else float("nan"), "folds": len(ok)})
    return rows


def per_source(preds: pd.DataFrame, sources: pd.Series) -> pd.DataFrame:
    """p(BCC)'s AUROC within each source and over all (`sources`: image_id → source)."""
    groups = preds["image_id"].map(sources).fillna("?")
    return pd.DataFrame(_auroc_rows(preds, "bcc", groups))


def heads_by_source(preds: pd.DataFrame, sources: pd.Series, outputs: Sequence[str] = CODES) -> pd.DataFrame:
    """Each trained, labelled pattern head's AUROC per source that labels it, and over those sources."""
    groups = preds["image_id"].map(sources).fillna("?")
    rows = []
    for o in outputs:
        if preds[f"p_{o}"].isna().all() or preds[f"y_{o}"].isna().all():
            continue  # not trained, or labelled nowhere
        labelled = preds[f"y_{o}"].notna()
        rows += [r for r in _auroc_rows(preds[labelled], o, groups[labelled]) if r["n"]]
    return pd.DataFrame(rows)


def _fold_scores(table: pd.DataFrame, fit_predict) -> pd.Series:
    """Out-of-fold scores: for each fold, `fit_predict(train rows, test rows)` fitted on the other folds."""
    scores = pd.Series(np.nan, index=table.index)
    for fold in sorted(table["fold"].unique()):
        test = table["fold"] == fold
        scores[test] = fit_predict(~test.to_numpy(), test.to_numpy())
    return scores


def shortcut_baselines(table: pd.DataFrame, images: np.ndarray) -> pd.DataFrame:
    """AUROC per source and over all of the shortcut scores (module docstring), fold by fold like the model.

    `table`: the dataset's images ⋈ labels ⋈ splits (``bcc``, ``source``, ``fold``); `images`: the network's
    view of each row (uint8 (N, S, S, 3))."""
    y = table["bcc"].to_numpy(float)
    source = table["source"].astype(str)

    def prior(train: np.ndarray, test: np.ndarray) -> np.ndarray:
        rate = pd.Series(y[train]).groupby(source[train].to_numpy()).mean()
        return source[test].map(rate).fillna(float(np.nanmean(y[train]))).to_numpy()

    colour = np.stack([colour_features(im) for im in images])

    def colours(train: np.ndarray, test: np.ndarray) -> np.ndarray:
        model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
        return model.fit(colour[train], y[train].astype(int)).predict_proba(colour[test])[:, 1]

    rows = []
    for name, fit in (("source prior", prior), ("colour statistics", colours)):
        frame = table[["image_id", "fold"]].assign(y_bcc=y, p_bcc=_fold_scores(table, fit).to_numpy())
        rows += [{"baseline": name, **r} for r in _auroc_rows(frame, "bcc", source)]
    return pd.DataFrame(rows)


def source_probe(runs: Sequence, table: pd.DataFrame, images: np.ndarray, images_key: str, c: float = 0.1,
                 max_train: int = 3000, seed: int = 0, cache_dir: Path | None = None) -> pd.DataFrame:
    """Per run (one per fold): balanced accuracy of a logistic regression on the run's frozen features
    naming the source of its test-fold pictures (fitted on at most `max_train` training-fold pictures),
    beside chance (1 / number of sources)."""
    source = table["source"].astype(str).to_numpy()
    n_sources = len(np.unique(source))
    rng = np.random.default_rng(seed)
    rows = []
    for run in runs:
        features = run_features(run.path, images, images_key, cache_dir)
        test = (table["fold"] == run.fold).to_numpy()
        train = np.flatnonzero(~test)
        train = rng.choice(train, min(max_train, len(train)), replace=False)
        model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=5000))
        guess = model.fit(features[train], source[train]).predict(features[test])
        rows.append({"fold": run.fold, "balanced_accuracy": balanced_accuracy_score(source[test], guess),
                     "accuracy": float((guess == source[test]).mean()), "chance": 1.0 / n_sources,
                     "n_test": int(test.sum())})
    return pd.DataFrame(rows)


def rule_on_labels(table: pd.DataFrame) -> pd.DataFrame:
    """Per source, and over all: the clinical rule over the codes labelled there (consensus), against the
    biopsy, on the pictures where every one of those codes is known."""
    rows = []
    groups = [(ALL, table)] + [(s, d) for s, d in table.groupby(table["source"].astype(str))]
    for name, d in groups:
        known = np.array([d[c].notna().all() and len(d) > 0 for c in CODES])
        if not known.any():
            continue
        codes = d[list(CODES)].fillna(0).to_numpy(int)
        verdict = clinical_rule(codes, known)
        rows.append({"source": name, "codes": "+".join(c for c, k in zip(CODES, known, strict=True) if k),
                     **binary_metrics(d["bcc"].to_numpy(int), verdict)})
    return pd.DataFrame(rows)


def held_out_sources(output_dirs: Sequence[Path], backbone: str, stage: int | None = None) -> pd.DataFrame:
    """Leave-one-source-out runs (``data.test_source``): the held-out source's AUROC, one row per run found
    (``<dir>/<backbone>/fold0/stage<s>/``, at `stage` or, None, the last finished one); none is an empty table."""
    rows = []
    for out in output_dirs:
        finished = [j.stage for j in find_jobs(out, backbone, holding=METRICS) if j.fold == 0
                    and (j.path / PREDICTIONS).is_file()]
        s = stage if stage is not None else (max(finished) if finished else None)
        if s is None or s not in finished:
            continue
        job = stage_dir(out, backbone, 0, s)
        preds = read_predictions(job / PREDICTIONS)
        metrics = pd.read_json(job / METRICS, typ="series")
        y = preds["y_bcc"].dropna().astype(int)
        rows.append({"held_out": Path(out).name, "stage": s, "n": len(y), "positives": int(y.sum()),
                     "auroc": roc_auc(y, preds.loc[y.index, "p_bcc"]),
                     "trained_on": int(metrics.get("n_images", {}).get("train", 0))})
    return pd.DataFrame(rows)


@dataclass
class SourceReport:
    """Everything :func:`source_report` measured, for the report and the CSV files."""

    per_source: pd.DataFrame
    heads: pd.DataFrame
    baselines: pd.DataFrame | None = None
    probe: pd.DataFrame | None = None
    rule: pd.DataFrame | None = None
    held_out: pd.DataFrame | None = None
    linear_probe: pd.DataFrame | None = None  # the frozen features' logistic regression, per output and source
    notes: list[str] = field(default_factory=list)

    def tables(self) -> dict[str, pd.DataFrame]:
        named = {"sources_bcc": self.per_source, "sources_heads": self.heads, "sources_shortcuts": self.baselines,
                 "sources_probe": self.probe, "sources_rule_on_labels": self.rule, "sources_held_out": self.held_out,
                 "sources_linear_probe": self.linear_probe}
        return {k: v for k, v in named.items() if v is not None and not v.empty}


def source_report(runs: Sequence, preds: pd.DataFrame, root: Path, preprocess: Preprocess, held_out_dirs: Sequence[Path],
                  backbone: str, probe: bool = True, shortcuts: bool = True, allow_outside: bool = False,
                  linear_probe_dirs: Mapping[int, Path] | None = None) -> SourceReport | None:
    """The confounder checks of a multi-source dataset (None for a dataset with one source); with
    `linear_probe_dirs` (fold → stage-1 run) also the linear probe on their frozen features, per source."""
    table = read_table(root, splits=False, allow_outside=allow_outside)
    if table["source"].nunique() < 2:
        return None
    sources = table.set_index("image_id")["source"].astype(str)
    report = SourceReport(per_source(preds, sources), heads_by_source(preds, sources), rule=rule_on_labels(table))
    if not (Path(root) / "splits.csv").is_file():  # an external set: no folds to fit the shortcuts and probe on
        report.notes.append(f"{root} has no splits.csv: the shortcut baselines and the source probe, fitted fold by "
                            "fold, are not computed.")
        probe = shortcuts = False
    else:
        table = read_table(root, allow_outside=allow_outside)
    if not (probe or shortcuts):
        linear_probe_dirs = None
    if probe or shortcuts:
        images, key = table_images(root, table, preprocess, allow_outside)
        if shortcuts:
            report.baselines = shortcut_baselines(table, images)
        if probe:
            report.probe = source_probe(runs, table, images, key, cache_dir=Path(root) / ".cache")
        if linear_probe_dirs:
            lp = probe_predictions(linear_probe_dirs, table, images, key, cache_dir=Path(root) / ".cache")
            report.linear_probe = pd.concat([per_source(lp, sources), heads_by_source(lp, sources)], ignore_index=True)
    report.held_out = held_out_sources(held_out_dirs, backbone) if held_out_dirs else None
    if report.held_out is None or report.held_out.empty:
        report.notes.append("No leave-one-source-out runs were found (`data.test_source=<source>` into "
                            "`<output_dir>/loso/<source>`; `make real` trains them).")
    return report
