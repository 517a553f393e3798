"""Where a job's files live: ``<output_dir>/<backbone>/fold<k>/stage<s>/`` and the names inside it.

Training writes these, evaluation, explanation and deployment read them; the Hydra run directory
(``paths.job_dir`` in ``conf/paths/default.yaml``) spells the same layout, which a test checks.
:func:`stage_dir` builds a job folder's path, :func:`parse_job` reads one back and :func:`find_jobs` lists an
output folder's jobs: the one reading of the layout, so that a folder a user left beside the jobs
(``fold4.bak``, ``foldx``, ``stage3-old``) is passed over (:func:`strays` names them) instead of crashing
a parser or being read as a fold.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

BEST, LAST = "best.ckpt", "last.ckpt"
PREDICTIONS, VAL_PREDICTIONS = "predictions.csv", "val_predictions.csv"
METRICS = "metrics.json"            # written last, atomically: its presence marks the job finished
THRESHOLDS = "thresholds.json"      # the operating thresholds bcc.evaluate writes beside best.ckpt
CALIBRATION = "calibration.json"    # per-output threshold, temperature and bias fitted on the validation slice
LOCK = "job.lock"                   # held while a job runs; left behind by an interrupted job
JOB_CONFIG = Path(".hydra") / "config.yaml"
JOB_OVERRIDES = Path(".hydra") / "overrides.yaml"


def stage_dir(output_dir: str | Path, backbone: str, fold: int, stage: int) -> Path:
    """``<output_dir>/<backbone>/fold<k>/stage<s>``."""
    return Path(output_dir) / backbone / f"fold{int(fold)}" / f"stage{int(stage)}"


_FOLD, _STAGE = re.compile(r"fold(\d+)"), re.compile(r"stage(\d+)")


@dataclass(frozen=True)
class Job:
    """One job folder: ``<output_dir>/<backbone>/fold<k>/stage<s>``."""

    backbone: str
    fold: int
    stage: int
    path: Path


def parse_job(path: str | Path) -> Job | None:
    """The :class:`Job` a folder ``<backbone>/fold<k>/stage<s>`` is (k and s whole numbers), None for any
    other folder."""
    path = Path(path)
    fold, stage = _FOLD.fullmatch(path.parent.name), _STAGE.fullmatch(path.name)
    if fold is None or stage is None or not path.parent.parent.name:
        return None
    return Job(path.parent.parent.name, int(fold.group(1)), int(stage.group(1)), path)


def find_jobs(output_dir: str | Path, backbone: str | None = None, stage: int | None = None,
              holding: str | None = None) -> list[Job]:
    """The job folders under `output_dir` (of `backbone`, at `stage`, holding the file `holding`, when
    given), sorted by backbone, stage and fold; folders not named as the layout says are passed over."""
    jobs = []
    for path in Path(output_dir).glob(f"{backbone or '*'}/fold*/stage*"):
        job = parse_job(path)
        if (job is None or not path.is_dir() or (stage is not None and job.stage != stage)
                or (holding is not None and not (path / holding).is_file())):
            continue
        jobs.append(job)
    return sorted(jobs, key=lambda j: (j.backbone, j.stage, j.fold))


def strays(output_dir: str | Path, backbone: str | None = None) -> list[Path]:
    """Folders under `output_dir` that look like a fold or stage but are not one (``fold4.bak``,
    ``foldx``, ``stage3-old``): passed over by :func:`find_jobs`, named by the messages about missing folds."""
    found = [p for p in Path(output_dir).glob(f"{backbone or '*'}/fold*") if p.is_dir() and not _FOLD.fullmatch(p.name)]
    found += [p for p in Path(output_dir).glob(f"{backbone or '*'}/fold*/stage*")
              if p.is_dir() and _FOLD.fullmatch(p.parent.name) and parse_job(p) is None]
    return sorted(found)


def read_job_config(job: str | Path) -> DictConfig | None:
    """The resolved config a job saved (``.hydra/config.yaml``), None when it saved none."""
    path = Path(job) / JOB_CONFIG
    if not path.is_file():
        return None
    cfg = OmegaConf.load(path)
    if not isinstance(cfg, DictConfig):
        raise TypeError(f"{path}: not a config mapping")
    return cfg
