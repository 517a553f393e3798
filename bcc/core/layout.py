"""Where a job's files live: ``<output_dir>/<backbone>/fold<k>/stage<s>/`` and the names inside it.

Training writes these, evaluation, explanation and deployment read them; the Hydra run directory
(``paths.job_dir`` in ``conf/paths/default.yaml``) spells the same layout, which a test checks.
"""
from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

BEST, LAST = "best.ckpt", "last.ckpt"
PREDICTIONS, VAL_PREDICTIONS = "predictions.csv", "val_predictions.csv"
METRICS = "metrics.json"            # written last, atomically: its presence marks the job finished
THRESHOLDS = "thresholds.json"      # the operating thresholds bcc.evaluate writes beside best.ckpt
CALIBRATION = "calibration.json"    # per-output threshold and temperature fitted on the validation slice
LOCK = "job.lock"                   # held while a job runs; left behind by an interrupted job
JOB_CONFIG = Path(".hydra") / "config.yaml"
JOB_OVERRIDES = Path(".hydra") / "overrides.yaml"


def stage_dir(output_dir: str | Path, backbone: str, fold: int, stage: int) -> Path:
    """``<output_dir>/<backbone>/fold<k>/stage<s>``."""
    return Path(output_dir) / backbone / f"fold{int(fold)}" / f"stage{int(stage)}"


def read_job_config(job: str | Path) -> DictConfig | None:
    """The resolved config a job saved (``.hydra/config.yaml``), None when it saved none."""
    path = Path(job) / JOB_CONFIG
    if not path.is_file():
        return None
    cfg = OmegaConf.load(path)
    if not isinstance(cfg, DictConfig):
        raise TypeError(f"{path}: not a config mapping")
    return cfg
