"""Finding an experiment's runs (``<output_dir>/<backbone>/fold<k>/stage<s>/``) and checking they are complete.

A backbone is evaluated at a stage only when every one of its k folds has a ``predictions.csv`` there:
a missing fold or stage raises :class:`MissingRunsError`, whose message names each missing job and the
command that produces it — results are never averaged over fewer folds without saying so.
"""
from __future__ import annotations

import json
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import pandas as pd
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from bcc.core import jobs
from bcc.core.errors import BadInput
from bcc.core.layout import CALIBRATION, METRICS, PREDICTIONS, find_jobs, read_job_config, strays
from bcc.core.machine import describe
from bcc.core.patterns import OUTPUTS
from bcc.core.predictions import read_predictions


class MissingRunsError(BadInput):
    """Folds or stages an evaluation needs are missing; the message lists them and the commands."""


@dataclass
class Run:
    """One finished (or started) job: ``<output_dir>/<backbone>/fold<k>/stage<s>``."""

    backbone: str
    fold: int
    stage: int
    path: Path
    config: dict = field(default_factory=dict, repr=False)
    metrics: dict = field(default_factory=dict, repr=False)
    stale: str | None = None  # why the job no longer holds (``bcc.core.jobs.stale``)

    @property
    def predictions(self) -> Path:
        return self.path / PREDICTIONS

    @property
    def finished(self) -> bool:
        """``metrics.json`` (written last) marks a finished job; a stale one counts as not done."""
        return self.predictions.is_file() and bool(self.metrics) and self.stale is None

    def problem(self) -> str:
        """What keeps an unfinished job from being evaluated."""
        if self.stale:
            return f"stale: {self.stale}"
        if not self.predictions.is_file():
            return f"{self.path} has no {PREDICTIONS} (unfinished or failed job)"
        lock = jobs.holder(self.path)
        return (f"{self.path} has no {METRICS} (unfinished: the job did not end"
                + (f"; {jobs.describe(lock)}" if lock else "") + ")")

    def trained_on(self) -> dict:
        """What the job trained on: its record (``metrics.json`` ``trained_on``), else what its config says."""
        rec = dict(self.metrics.get("trained_on") or {})
        rec.setdefault("image_size", self.metrics.get("image_size") or self.config.get("data", {}).get("image_size"))
        return rec

    @property
    def calibrated(self) -> bool:
        """Training fitted this run's validation thresholds and scalings (``calibration.json``)."""
        return (self.path / CALIBRATION).is_file()


def read_config(job: Path) -> dict:
    """The job's resolved Hydra config (``.hydra/config.yaml``), {} when absent; unresolvable keys stay raw."""
    cfg = read_job_config(job)
    if cfg is None:
        return {}
    try:
        return cast(dict, OmegaConf.to_container(cfg, resolve=True))
    except OmegaConfBaseException:  # an interpolation Hydra would have resolved (e.g. ${hydra:...}): keep it raw
        return cast(dict, OmegaConf.to_container(cfg, resolve=False))


def discover(output_dir: str | Path) -> list[Run]:
    """Every job folder under `output_dir` (finished or not), sorted by backbone, stage, fold
    (``core.layout.find_jobs``: a ``fold4.bak`` beside them is no job)."""
    runs = []
    for job in find_jobs(output_dir):
        metrics_path = job.path / METRICS
        metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
        runs.append(Run(job.backbone, job.fold, job.stage, job.path, read_config(job.path), metrics,
                        jobs.stale(job.path, metrics) if metrics else None))
    return runs


def folds_expected(runs: list[Run], default: int | None = None) -> int:
    """`default` when given (``eval.k``: e.g. 1 for a sweep run on fold 0 only), else the runs' ``data.k``
    (all runs must agree), else the folds seen."""
    if default:
        return int(default)
    ks = {int(r.config["data"]["k"]) for r in runs if r.config.get("data", {}).get("k") is not None}
    if len(ks) > 1:
        raise BadInput(f"runs disagree on the number of folds (data.k = {sorted(ks)}); evaluate them separately")
    if ks:
        return ks.pop()
    return max((r.fold for r in runs), default=-1) + 1


def train_command(experiment: str | None, backbone: str, fold: int, stages: list[int],
                  overrides: Sequence[str] = ()) -> str:
    """The command that (re)makes `stages` of `fold`, in order (stage s>1 needs s-1's checkpoint); with
    `overrides` (those the runs were trained with) instead of ``experiment=``."""
    if overrides:
        exp = "".join(" " + shlex.quote(o) for o in overrides)
    else:
        exp = f" experiment={experiment}" if experiment and experiment != "default" else ""
    if len(stages) == 1:
        return f"python -m bcc.train{exp} backbone={backbone} stage={stages[0]} fold={fold}"
    return (f"python -m bcc.train{exp} backbone={backbone} stage={','.join(map(str, stages))} fold={fold} "
            f"--multirun")


def missing_jobs(runs: list[Run], backbone: str, stage: int, k: int) -> dict[int, list[int]]:
    """fold → the stages (1..`stage`, in order) to (re)run so that `stage` of that fold is finished."""
    done = {(r.fold, r.stage) for r in runs if r.backbone == backbone and r.finished}
    out = {}
    for fold in range(k):
        if (fold, stage) in done:
            continue
        first = stage
        while first > 1 and (fold, first - 1) not in done:
            first -= 1
        out[fold] = list(range(first, stage + 1))
    return out


def describe_missing(runs: list[Run], experiment: str | None, backbone: str, stage: int, k: int,
                     output_dir: Path, overrides: Sequence[str] = ()) -> list[str]:
    """One line per missing fold: what is missing and the command that produces it ([] when complete);
    `overrides`: see :func:`train_command`."""
    lines = []
    by_key = {(r.fold, r.stage): r for r in runs if r.backbone == backbone}
    for fold, stages in missing_jobs(runs, backbone, stage, k).items():
        job = by_key.get((fold, stage))
        what = (job.problem() if job is not None
                else f"{output_dir / backbone / f'fold{fold}' / f'stage{stage}'} does not exist")
        lines.append(f"{backbone} fold {fold} stage {stage}: {what} → "
                     f"`{train_command(experiment, backbone, fold, stages, overrides)}`")
    return lines


def check_complete(runs: list[Run], experiment: str | None, backbone: str, stage: int, k: int,
                   output_dir: Path, overrides: Sequence[str] = ()) -> None:
    lines = describe_missing(runs, experiment, backbone, stage, k, output_dir, overrides)
    if lines:
        odd = strays(output_dir, backbone)
        raise MissingRunsError(
            f"{backbone} stage {stage}: {len(lines)} of {k} folds missing under {output_dir} — Table 3 is "
            f"never averaged over fewer folds. Produce them with:\n  " + "\n  ".join(lines) +
            (f"\n({', '.join(map(str, odd))}: not read — a job folder is <backbone>/fold<k>/stage<s>)" if odd else "") +
            "\n(or evaluate what exists with eval.allow_incomplete=true, which reports the backbone as "
            "incomplete instead of averaging)")


#: what every averaged run must share: (key of ``Run.trained_on()``, its name in messages)
SAME_WITHIN_BACKBONE = (("dataset_hash", "dataset content"), ("image_size", "input size"), ("k", "number of folds"),
                        ("split_seed", "split seed"))
SAME_ACROSS_BACKBONES = (("dataset_hash", "dataset content"),)


class MixedRunsError(BadInput):
    """Runs to be averaged were trained on different data or input sizes; the message names the difference."""


def mixed(runs: list[Run], keys: tuple[tuple[str, str], ...]) -> list[str]:
    """One line per recorded fact the runs disagree on: which run has which value ([] when they agree)."""
    lines = []
    for key, name in keys:
        values: dict[str, dict[str, list[str]]] = {}
        for r in runs:
            v = r.trained_on().get(key)
            if v is not None:
                values.setdefault(str(v), {}).setdefault(r.backbone, []).append(str(r.fold))
        if len(values) > 1:
            said = ["; ".join(f"{b} fold{'s' if len(f) > 1 else ''} {', '.join(f)}" for b, f in who.items()) + f": {v}"
                    for v, who in values.items()]
            lines.append(f"{name} ({key}) differs: " + " | ".join(said))
    return lines


def check_same_training(runs: list[Run], stage: int, backbones: list[str], allow: bool) -> list[str]:
    """Refuse to average runs that were trained on different data (content hash, folds) or at
    different input sizes (within a backbone; across backbones the data must agree); with `allow` the
    differences are returned for the report to state instead."""
    chosen = [r for r in runs if r.stage == stage and r.finished and r.backbone in backbones]
    lines = [f"{b}: {line}" for b in backbones
             for line in mixed([r for r in chosen if r.backbone == b], SAME_WITHIN_BACKBONE)]
    if not lines:
        lines = mixed(chosen, SAME_ACROSS_BACKBONES)
    if lines and not allow:
        raise MixedRunsError(f"stage {stage}: the runs to average were not trained alike —\n  " + "\n  ".join(lines)
                             + "\nRetrain the odd ones so that every fold sees the same data and input size, evaluate "
                               "each training in its own output_dir, or pass eval.allow_mixed=true to report them "
                               "with the differences stated")
    return lines


def load_predictions(runs: list[Run], backbone: str, stage: int) -> pd.DataFrame:
    """All test-fold predictions of one backbone at one stage, one ``fold`` column. Where a model made no
    prediction (``p_<output>`` blank: that head was not trained) the label is blanked too, so every metric
    leaves the output out instead of scoring noise."""
    frames = [read_predictions(r.predictions, r.fold) for r in runs
              if r.backbone == backbone and r.stage == stage and r.finished]
    if not frames:
        return pd.DataFrame()
    df = pd.concat(frames, ignore_index=True)
    for o in OUTPUTS:
        df.loc[df[f"p_{o}"].isna(), f"y_{o}"] = pd.NA
    return df


def run_facts(runs: list[Run], backbone: str, stage: int) -> dict:
    """What the report states about a backbone's runs: start of stage 1, image size, dataset, timm name."""
    chosen = [r for r in runs if r.backbone == backbone and r.stage == stage and r.finished]
    first = chosen[0] if chosen else None
    cfg = first.config if first else {}
    stage1 = [r for r in runs if r.backbone == backbone and r.stage == 1]
    starts = sorted({str(r.metrics["start"]) for r in stage1 if r.metrics.get("start")})
    if not starts and cfg.get("backbone"):
        b = cfg["backbone"]
        starts = [f"weights:{b['weights']}" if b.get("weights") else ("imagenet" if b.get("pretrained") else "stage0")]
    stage0 = any(r.backbone == backbone and r.stage == 0 for r in runs)
    return {
        "backbone": backbone,
        "timm_name": (first.metrics.get("timm_name") if first else None) or cfg.get("backbone", {}).get("timm_name"),
        "image_size": (first.metrics.get("image_size") if first else None) or cfg.get("data", {}).get("image_size"),
        "preprocess": {k: cfg.get("data", {}).get(k) for k in ("resize", "colour") if cfg.get("data", {}).get(k)},
        "dataset": cfg.get("data", {}).get("root"),
        "start": ", ".join(starts) if starts else "unknown",
        "stage0": stage0,
        "experiment": (first.metrics.get("experiment") if first else None) or cfg.get("experiment_name"),
        "epochs": {r.fold: r.metrics.get("epochs") for r in chosen},
        "seeds": sorted({r.metrics["seed"] for r in chosen if "seed" in r.metrics}),
        "machines": sorted({describe(r.metrics["machine"]) for r in chosen if r.metrics.get("machine")}),
    }
