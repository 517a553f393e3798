"""Per-fold summary of a finished protocol, read back from the jobs' ``metrics.json`` files."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from bcc.core.layout import METRICS, find_jobs

COLUMNS = {  # summary column → (output, metric) in metrics.json["test"]
    "bcc_acc": ("bcc", "accuracy"), "bcc_auroc": ("bcc", "auroc"), "bcc_recall": ("bcc", "recall"),
    "bcc_spec": ("bcc", "specificity"), "rule_acc": ("rule", "accuracy"),
    "patterns_auroc": ("patterns", "auroc"), "patterns_acc": ("patterns", "accuracy"),
}


def collect(output_dir: str | Path, backbone: str | None = None) -> pd.DataFrame:
    """One row per finished job under `output_dir` (``core.layout.find_jobs``): backbone, fold, stage, start,
    epochs and test metrics."""
    rows = []
    for job in find_jobs(output_dir, holding=METRICS):
        m = json.loads((job.path / METRICS).read_text())
        if backbone and m.get("backbone") != backbone:
            continue
        row = {"backbone": m.get("backbone"), "fold": m.get("fold"), "stage": m.get("stage"),
               "start": m.get("start"), "epochs": m.get("epochs")}
        for col, (out, metric) in COLUMNS.items():
            row[col] = m.get("test", {}).get(out, {}).get(metric)
        rows.append(row)
    df = pd.DataFrame(rows, columns=["backbone", "fold", "stage", "start", "epochs", *COLUMNS])
    return df.sort_values(["backbone", "stage", "fold"]).reset_index(drop=True)


def summary_table(output_dir: str | Path, backbone: str | None = None, stage: int | None = 3) -> pd.DataFrame:
    """Test-fold metrics per fold for one stage (default 3), with mean and std rows."""
    df = collect(output_dir, backbone)
    if stage is not None:
        df = df[df["stage"] == stage]
    if df.empty:
        return df
    table = df.set_index(["backbone", "fold"])[list(COLUMNS)]
    stats = table.groupby(level="backbone").agg(["mean", "std"])
    extra = []
    for b in stats.index:
        for s in ("mean", "std"):
            extra.append(pd.DataFrame([stats.loc[b].xs(s, level=1)], index=pd.MultiIndex.from_tuples([(b, s)])))
    return pd.concat([table, *extra]).rename_axis(["backbone", "fold"])


def format_summary(output_dir: str | Path, backbone: str | None = None, stage: int | None = 3) -> str:
    """The per-fold summary as printed at the end of ``make demo``."""
    table = summary_table(output_dir, backbone, stage)
    if table.empty:
        return f"no finished stage-{stage} jobs under {output_dir}"
    title = f"test-fold metrics, stage {stage} ({output_dir})"
    return f"{title}\n{table.to_string(float_format=lambda v: f'{v:.3f}')}"
