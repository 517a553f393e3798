"""``make real DATA=<folder>`` (``python -m bcc.real [overrides]``): the public dermoscopy sets end to end.

``make real`` first merges the sets found under ``DATA`` (``python -m bcc.data.public DATA --out data/real``),
then this command runs, on ``experiment=real``: the Dawid–Skene consensus and the folds (stratified on
each source and its BCC), the whole protocol (stages 0→1→2→3) on every fold, the leave-one-source-out runs
(stage 0, one per source with both classes, into ``<output_dir>/loso/<source>/``) and the evaluation report
(``<output_dir>/report/``). Each step's wall time is printed and kept in ``<output_dir>/timings.json``.
Arguments are Hydra overrides of the training config, e.g. ``make real ARGS="data.image_size=128"``; those of
the evaluation (``eval.*``, ``wandb.*``) go to the report only.
"""
from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import hydra
import pandas as pd
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from bcc.cli.evaluate import resolve_dirs
from bcc.core.cli import hydra_command
from bcc.core.config import with_override
from bcc.core.io import write_json
from bcc.core.machine import machine
from bcc.data.consensus import ensure_labels
from bcc.data.contract import DatasetError
from bcc.data.folds import ensure_splits
from bcc.data.table import read_table
from bcc.evaluation.pipeline import evaluate
from bcc.training.protocol import run_job, run_protocol


def loso_sources(root: Path) -> list[str]:
    """The sources a leave-one-source-out AUROC can be measured on: both classes among their pictures, and
    other sources left to train on."""
    table = read_table(root, splits=False)
    both = table.groupby(table["source"].astype(str))["bcc"].agg(lambda y: 0 < y.sum() < len(y))
    return sorted(both.index[both]) if table["source"].nunique() > 1 else []


EVAL_KEYS = ("eval.", "wandb.", "+eval.", "report_dir=")


def task(cfg: DictConfig, eval_overrides: Sequence[str] = ()) -> None:
    root, out = Path(cfg.data.root), Path(cfg.paths.output_dir)
    if not (root / "images.csv").is_file():
        raise DatasetError(f"{root}: no merged dataset there; make it first: `python -m bcc.data.public <folder "
                           f"holding HAM10000, Derm7pt, PH2> --out {root.parent}` (`make real DATA=<folder>` does both)")
    compose = lambda o: hydra.compose(config_name="config", overrides=o)  # the running app's composer
    overrides = [o for o in HydraConfig.get().overrides.task if not o.startswith("hydra")]
    timings: dict[str, float] = {}
    load: dict[str, float] = {}  # 1-minute load average at each step's end: a shared machine's times say little alone

    def step(name: str, work) -> None:
        print(f"\n== {name} ==", flush=True)
        t0 = time.perf_counter()
        work()
        timings[name] = round(time.perf_counter() - t0, 1)
        load[name] = round(os.getloadavg()[0], 2)
        print(f"[bcc] {name}: {timings[name] / 60:.1f} min", flush=True)

    step("consensus", lambda: ensure_labels(root, verbose=True))
    step("folds", lambda: ensure_splits(root, k=int(cfg.data.k), seed=int(cfg.data.split_seed), verbose=True,
                                        by_source=bool(cfg.data.stratify_source)))
    step(f"protocol: {cfg.data.k} folds x stages 0-3", lambda: run_protocol(overrides, compose=compose))
    for source in loso_sources(root):
        job = with_override(with_override(with_override(overrides, "stage", "'0'"), "data.test_source", source),
                            "paths.output_dir", str(out / "loso" / source))
        step(f"leave out {source} (stage 0)", lambda job=job: run_job(compose(job), compose, job))

    def report() -> None:
        ecfg = hydra.compose(config_name="eval", overrides=[f"experiment={cfg.experiment_name}", *overrides,
                                                             *eval_overrides])
        ev = evaluate(resolve_dirs(ecfg), "python -m bcc.real (evaluation)")
        print(f"[bcc] report: {ev.report_dir / 'report.md'}")

    step("evaluation", report)
    total = sum(timings.values())
    write_json({"steps_seconds": timings, "total_seconds": round(total, 1), "load_average_at_end": load,
                "threads": torch.get_num_threads(), "machine": machine()}, out / "timings.json")
    print("\n" + pd.Series({k: f"{v / 60:.1f} min" for k, v in timings.items()}).to_string())
    print(f"total: {total / 60:.1f} min on {machine().get('cpu', 'this machine')}")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    evaluation = [a for a in argv if a.startswith(EVAL_KEYS)]
    training = [a for a in argv if a not in evaluation]
    return hydra_command("bcc.real", "config", lambda cfg: task(cfg, evaluation),
                         ["experiment=real", *training, "hydra/job_logging=none"])
