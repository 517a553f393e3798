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
               "start": m.get("start"), "epochs": m.get("epochs"), "train_s": m.get("train_seconds"),
               "images_per_s": m.get("images_per_second"), "input": (m.get("frozen") or {}).get("level", "image"),
               "frozen_s": (m.get("frozen") or {}).get("seconds", 0.0)}
        for col, (out, metric) in COLUMNS.items():
            row[col] = m.get("test", {}).get(out, {}).get(metric)
        rows.append(row)
    df = pd.DataFrame(rows, columns=["backbone", "fold", "stage", "start", "epochs", "train_s", "images_per_s",
                                     "input", "frozen_s", *COLUMNS])
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


def throughput_table(output_dir: str | Path, backbone: str | None = None) -> pd.DataFrame:
    """Per backbone and stage, over the folds: epochs, training seconds, training images per second, what the
    stage trained on (images, or the frozen part's ``trunk``/``pooled`` activations) and the seconds spent
    computing those (the first fold pays them, later ones reuse them)."""
    df = collect(output_dir, backbone)
    if df.empty:
        return df
    return df.groupby(["backbone", "stage"]).agg(
        folds=("fold", "count"), epochs=("epochs", "mean"), train_s=("train_s", "sum"),
        images_per_s=("images_per_s", "mean"), input=("input", "first"), frozen_s=("frozen_s", "sum"))


def format_summary(output_dir: str | Path, backbone: str | None = None, stage: int | None = 3) -> str:
    """The per-fold summary as printed at the end of ``make demo``, then the training throughput per stage."""
    table = summary_table(output_dir, backbone, stage)
    if table.empty:
        return f"no finished stage-{stage} jobs under {output_dir}"
    title = f"test-fold metrics, stage {stage} ({output_dir})"
    speed = throughput_table(output_dir, backbone)
    return (f"{title}\n{table.to_string(float_format=lambda v: f'{v:.3f}')}\n\ntraining throughput per stage "
            f"(images/s: training images through the trained part per second of fit, validation included)\n"
            f"{speed.to_string(float_format=lambda v: f'{v:.1f}')}")
