"""The W&B summary run of an evaluation: its tables as ``wandb.Table``, its figures as ``wandb.Image``.

One run in the experiment's W&B group (job type ``eval``), offline by default, under ``<report_dir>/wandb/``
(``wandb sync`` uploads it).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from bcc.evaluation.report import Evaluation

__all__ = ["log_wandb"]


def log_wandb(ev: Evaluation, tables: dict[str, pd.DataFrame], project: str = "bcc", offline: bool = True) -> Path:
    """One W&B run (group = experiment, job type ``eval``) with the tables and figures; returns its folder."""
    import wandb

    settings = wandb.Settings(silent=True, console="off", x_disable_stats=True, x_disable_machine_info=True,
                              save_code=False, disable_git=True)
    run = wandb.init(project=project, group=ev.experiment, job_type="eval", name=f"eval/stage{ev.stage}",
                     dir=str(ev.report_dir), mode="offline" if offline else "online", settings=settings,
                     config={"experiment": ev.experiment, "stage": ev.stage, "k": ev.k, "thresholds": ev.thresholds,
                             "backbones": [r.backbone for r in ev.results]}, reinit="finish_previous")
    failed = True
    try:
        log: dict[str, Any] = {f"tables/{name}": wandb.Table(dataframe=df.reset_index(drop=True).astype(
            {c: str for c in df.columns if df[c].dtype == object})) for name, df in tables.items() if df is not None}
        for r in ev.results:
            for key, path in r.figures.items():
                log[f"figures/{r.backbone}/{key}"] = wandb.Image(str(path))
            for _, row in r.table3.iterrows():
                for m in ("recall", "specificity", "precision", "accuracy"):
                    run.summary[f"{r.backbone}/{row['section']}/{row['row']}/{m}"] = row[f"{m}_mean"]
            run.summary[f"{r.backbone}/ece"] = r.calibration["ece"]
        run.log(log)
        failed = False
        return Path(run.dir).parent
    finally:
        wandb.finish(exit_code=1 if failed else 0)
