"""``python -m bcc.evaluate [experiment=<name>] [eval.thresholds=0.5|val] [...]``: the cross-fold report.

Settings: ``conf/eval.yaml`` (Hydra overrides; ``--multirun`` sweeps them). The work is
``bcc.evaluation.pipeline.evaluate``.
"""
from __future__ import annotations

import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from bcc.core.cli import hydra_command
from bcc.core.config import CONF_DIR, check_ranges, check_targets, normalize_overrides
from bcc.core.log import get_logger
from bcc.core.settings import EvalConfig, EvalSettings, check_schema, ranges_of
from bcc.evaluation.clinical_metrics import PATTERNS, ROW_BCC
from bcc.evaluation.external import auroc_words
from bcc.evaluation.pipeline import evaluate, mean_of

log = get_logger(__name__)


def resolve_dirs(cfg: DictConfig) -> DictConfig:
    """The options checked (every key against ``core.settings.EvalConfig``, ``eval.table4``'s against
    ``Table4Settings``, the numbers against the ranges beside their fields), then ``report_dir`` when not
    given: the paper's stage 3 in report/, another stage beside it (never colliding)."""
    check_schema(cfg, EvalConfig)
    check_targets(cfg, ["eval.table4"])
    check_ranges(cfg, ranges_of(EvalSettings, "eval."))
    if cfg.report_dir is None:
        stage = int(cfg.eval.stage)
        cfg.report_dir = str(Path(cfg.output_dir) / ("report" if stage == 3 else f"report-stage{stage}"))
    return cfg


def load_config(overrides: Sequence[str] = ()) -> DictConfig:
    """The evaluation config for `overrides` outside a running Hydra app (tests, notebooks)."""
    with hydra.initialize_config_dir(str(CONF_DIR), version_base="1.3", job_name="evaluate"):
        return resolve_dirs(hydra.compose(config_name="eval", overrides=normalize_overrides(list(overrides))))


def task(cfg: DictConfig) -> None:
    resolve_dirs(cfg)
    args = list(HydraConfig.get().overrides.task)
    ev = evaluate(cfg, "python -m bcc.evaluate" + "".join(" " + shlex.quote(a) for a in args))
    log.info(f"[bcc] report: {ev.report_dir / 'report.md'}")
    if ev.ensemble is not None:
        log.info(f"[bcc] external set: {auroc_words(ev.ensemble)}")
    for r in ev.results:
        t = r.table3.set_index("row")
        log.info(f"[bcc] {r.backbone} stage {ev.stage}: BCC accuracy {t.at[ROW_BCC, 'accuracy_mean']:.3f}, "
                 f"pattern accuracy {mean_of(r.table3, PATTERNS, None, 'accuracy'):.3f}, "
                 f"ECE {r.calibration['ece']:.3f}")


def main(argv: Sequence[str] | None = None) -> int:
    return hydra_command("bcc.evaluate", "eval", task, sys.argv[1:] if argv is None else argv)
