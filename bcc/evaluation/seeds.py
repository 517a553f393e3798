"""The seed-to-seed spread: the same data, folds and settings trained again with other seeds.

A single run's figure is one draw; training from scratch on a few thousand pictures moves a fold's AUROC
by a few hundredths between seeds. The report states the spread, not the best run: for this run and
every finished run under ``<output_dir>/seeds/<name>/`` (e.g. ``python -m bcc.train experiment=real seed=1
paths.output_dir=outputs/real/seeds/seed1 stage=all 'fold=range(0,3)' --multirun``), the mean over its test
folds of the AUROC of p(BCC) — overall and within each source — and of each labelled pattern head, then
the mean and sd over the seeds.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from bcc.core.patterns import CODES
from bcc.evaluation.metrics import roc_auc
from bcc.evaluation.runs import discover, load_predictions


def _fold_mean_auroc(preds: pd.DataFrame, output: str, mask: np.ndarray | None = None) -> float:
    d = preds if mask is None else preds[mask]
    d = d[d[f"y_{output}"].notna() & d[f"p_{output}"].notna()]
    values = [roc_auc(f[f"y_{output}"].astype(int), f[f"p_{output}"]) for _, f in d.groupby("fold")]
    values = [v for v in values if np.isfinite(v)]
    return float(np.mean(values)) if values else float("nan")


def run_row(preds: pd.DataFrame, sources: pd.Series | None) -> dict[str, float]:
    """One run's figures: AUROC of p(BCC) (mean over its test folds) overall and per source, of each trained
    and labelled pattern head overall, and the BCC accuracy at 0.5."""
    row = {"bcc_auroc": _fold_mean_auroc(preds, "bcc"),
           "bcc_accuracy": float(((preds["p_bcc"] >= 0.5) == (preds["y_bcc"] == 1)).mean())}
    if sources is not None:
        src = preds["image_id"].map(sources).astype(str).to_numpy()
        for s in sorted(set(src)):
            row[f"bcc_auroc[{s}]"] = _fold_mean_auroc(preds, "bcc", src == s)
    for c in CODES:
        if preds[f"p_{c}"].notna().any() and preds[f"y_{c}"].notna().any():
            row[f"{c}_auroc"] = _fold_mean_auroc(preds, c)
    return row


def seed_spread(output_dir: Path, backbone: str, stage: int, k: int, sources: pd.Series | None = None
                ) -> pd.DataFrame | None:
    """Rows per seed run (this one first) and two summary rows, ``mean`` and ``sd``; None without other seeds."""
    dirs: Sequence[Path] = [Path(output_dir), *sorted(p for p in (Path(output_dir) / "seeds").glob("*") if p.is_dir())]
    rows = []
    for d in dirs:
        runs = [r for r in discover(d) if r.backbone == backbone and r.stage == stage and r.finished]
        if sorted({r.fold for r in runs}) != list(range(k)):
            continue  # an unfinished seed run is left out, never averaged over fewer folds
        seed = sorted({r.metrics["seed"] for r in runs if r.metrics.get("seed") is not None})
        rows.append({"run": d.name if d != Path(output_dir) else "this run", "seed": ",".join(map(str, seed)),
                     **run_row(load_predictions(runs, backbone, stage), sources)})
    if len(rows) < 2:
        return None
    table = pd.DataFrame(rows)
    numbers = table.select_dtypes("number")
    summary = pd.DataFrame([{"run": "mean", **numbers.mean().to_dict()},
                            {"run": "sd", **numbers.std(ddof=1).to_dict()}])
    return pd.concat([table, summary], ignore_index=True)
