"""``python -m bcc.train [overrides] [--multirun]``: train one backbone x fold x stage per Hydra job.

    python -m bcc.train stage=1,2,3 fold=0-4 --multirun   # the protocol, 5 folds (fold=0-4 is accepted)
    python -m bcc.train stage=all fold=0                  # 0?->1->2->3 of one fold in one process

Outputs: ``<paths.output_dir>/<backbone>/fold<k>/stage<s>/``. Scoring a trained experiment on another dataset
(``experiment=external``) is the evaluation command's: ``python -m bcc.evaluate experiment=external ...``.
"""
from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from bcc.core.cli import hydra_command
from bcc.core.errors import UsageError
from bcc.core.log import get_logger, rank
from bcc.training.config import optimized_value
from bcc.training.protocol import run_job

log = get_logger(__name__)


def task(cfg: DictConfig) -> float | None:
    """Train the job; return its ``optimized_metric`` (for a Hydra sweeper, e.g. ``hparams_search=optuna``)."""
    if cfg.get("external") is not None:
        raise UsageError("experiment=external scores trained models and trains nothing: run it with the evaluation "
                         "command, `python -m bcc.evaluate experiment=external external.source=<runs> "
                         "data.root=<dataset>` (README: \"Score a held-out set\")")
    overrides = list(HydraConfig.get().overrides.task)
    results = run_job(cfg, lambda o: hydra.compose(config_name="config", overrides=o), overrides)
    if rank() != 0:
        return None
    for m in results.values():
        t = m["test"]
        log.info(f"[bcc] {m['backbone']} fold {m['fold']} stage {m['stage']}: test BCC accuracy "
                 f"{t.get('bcc', {}).get('accuracy', float('nan')):.3f}, rule accuracy "
                 f"{t.get('rule', {}).get('accuracy', float('nan')):.3f} -> {Path(cfg.paths.output_dir)}")
    value = optimized_value(cfg, results)
    if value is not None:
        log.info(f"[bcc] optimized_metric {cfg.optimized_metric} = {value:.4f}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if rank() > 0:  # a DDP process other than the first: rank 0 writes the job's .hydra/ and log
        argv += ["hydra.output_subdir=null", "hydra/job_logging=disabled"]
    return hydra_command("bcc.train", "config", task, argv)
