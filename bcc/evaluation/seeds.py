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

import pandas as pd

from bcc.evaluation.runs import discover, load_predictions
from bcc.evaluation.sources import ALL, heads_by_source, per_source


def run_row(preds: pd.DataFrame, sources: pd.Series | None) -> dict[str, float]:
    """One run's figures: AUROC of p(BCC) (mean over its test folds) overall and per source, of each trained
    and labelled pattern head overall (:mod:`bcc.evaluation.sources`' tables), and the BCC accuracy at 0.5."""
    groups = sources if sources is not None else pd.Series(dtype=str)
    bcc = per_source(preds, groups).set_index("source")["auroc_mean"]
    row = {"bcc_auroc": float(bcc[ALL]),
           "bcc_accuracy": float(((preds["p_bcc"] >= 0.5) == (preds["y_bcc"] == 1)).mean())}
    if sources is not None:
        row.update({f"bcc_auroc[{s}]": float(v) for s, v in bcc.drop(ALL).items()})
    heads = heads_by_source(preds, groups)
    for _, h in heads[heads["source"] == ALL].iterrows() if len(heads) else []:
        row[f"{h['output']}_auroc"] = float(h["auroc_mean"])
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
