"""``make demo`` (``python -m bcc.demo [overrides]``): the embedded synthetic set end to end.

Generates ``data/synthetic`` (1559 images, as in the paper) when absent, prints the Dawid–Skene
rater-quality and the fold tables, then trains MobileNetV2 through stages 0→1→2→3 on every fold
(``experiment=demo``; from ImageNet weights, e.g. ``backbone=efficientnet_lite0``, 1→2→3) and prints the
per-fold summary. Arguments are Hydra overrides of the training
config, e.g. ``make demo ARGS="data.k=3"``.
"""
from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from bcc.core.cli import hydra_command
from bcc.core.log import get_logger
from bcc.data.consensus import ensure_labels
from bcc.data.folds import ensure_splits
from bcc.training.protocol import prepare_dataset, run_protocol
from bcc.training.stages import sequence

log = get_logger(__name__)


def task(cfg: DictConfig) -> None:
    prepare_dataset(cfg)  # generates the synthetic set on first use
    root = Path(cfg.data.root)
    log.info(f"\n== Consensus (Dawid–Skene EM) on {root} ==")
    ensure_labels(root, verbose=True)
    log.info("\n== Folds ==")
    ensure_splits(root, k=int(cfg.data.k), seed=int(cfg.data.split_seed), verbose=True)
    stages = "→".join(str(s) for s in sequence("all", cfg.backbone))  # run_protocol: stage=all; no 0 from ImageNet
    log.info(f"\n== Training: {cfg.data.k} folds × stages {stages}, {cfg.backbone.name}, "
             f"{cfg.data.image_size} px (experiment={cfg.experiment_name}) ==")
    overrides = [o for o in HydraConfig.get().overrides.task if not o.startswith("hydra")]
    run_protocol(overrides, compose=lambda o: hydra.compose(config_name="config", overrides=o))
    same = "" if cfg.experiment_name == "demo" else f' ARGS="experiment={cfg.experiment_name}"'
    log.info(f"\nOutputs: {cfg.paths.output_dir}/  — next: `make eval{same}` writes the report")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    return hydra_command("bcc.demo", "config", task, ["experiment=demo", *argv, "hydra/job_logging=none"])
