"""Hydra entry point: ``python -m bcc.train [overrides]`` trains one backbone x fold x stage per job.

    python -m bcc.train stage=1,2,3 fold=0-4 --multirun   # the protocol, 5 folds (fold=0-4 is accepted)
    python -m bcc.train stage=all fold=0                  # 0?->1->2->3 of one fold in one process
    python -m bcc.train experiment=demo                   # see conf/experiment/

From Python: ``run_protocol(["experiment=demo"])`` runs every fold's whole protocol and returns the
per-fold summary (``bcc.results``). Outputs: ``<paths.output_dir>/<backbone>/fold<k>/stage<s>/``.
"""
from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import hydra
import lightning as L
import pandas as pd
from hydra.core.hydra_config import HydraConfig
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import DictConfig, OmegaConf

from bcc import loggers
from bcc.datamodule import BCCDataModule
from bcc.io import atomic_path, write_csv
from bcc.losses import resolve_alpha
from bcc.metrics import nested
from bcc.model import MultitaskModel
from bcc.results import format_summary, summary_table
from bcc.stages import (
    StageCallback,
    load_start,
    needs_stage0,
    sequence,
    stage_dir,
    start_checkpoint,
    start_description,
)

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
Composer = Callable[[list[str]], DictConfig]



def quiet_lightning() -> None:
    """Drop Lightning's advice that does not apply here (workers, frozen modules, reused folders, tips)."""
    for pattern in (".*does not have many workers.*", r".*module\(s\) in eval mode.*", ".*exists and is not empty.*",
                    ".*callbacks used to create the checkpoint.*", ".*LeafSpec.*", ".*is deprecated.*"):
        warnings.filterwarnings("ignore", message=pattern)
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logging.getLogger(name).setLevel(logging.WARNING)

_FOLD_RANGE = re.compile(r"^(\+{0,2}fold)=(\d+)-(\d+)$")
_STAGES = re.compile(r"^(\+{0,2}stage)=((?:\d+|all|'\d+'|\"\d+\")(?:,(?:\d+|all|'\d+'|\"\d+\"))*)$")


# ---- command line --------------------------------------------------------------------------------------
def normalize_overrides(args: Sequence[str]) -> list[str]:
    """Rewrite the shorthands Hydra cannot read as meant.

    ``fold=0-4`` → ``fold=range(0,5)`` (a sweep of 0..4, inclusive); ``stage=1,2,3`` → ``stage='1','2','3'``
    (stage is a config group and Hydra only accepts string names for groups).
    """
    out = []
    for a in args:
        m = _FOLD_RANGE.match(a)
        if m:
            lo, hi = int(m.group(2)), int(m.group(3))
            if hi < lo:
                raise SystemExit(f"{a}: the range must go up, e.g. fold=0-4")
            a = f"{m.group(1)}=range({lo},{hi + 1})"
        m = _STAGES.match(a)
        if m:
            names = [t.strip("'\"") for t in m.group(2).split(",")]
            a = f"{m.group(1)}=" + ",".join(n if n == "all" else f"'{n}'" for n in names)
        out.append(a)
    return out


def _with(overrides: Sequence[str], key: str, value) -> list[str]:
    """`overrides` with `key` set to `value` (replacing any earlier setting)."""
    kept = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") != key]
    return kept + [f"{key}={value}"]


def _hint(overrides: Sequence[str]) -> str:
    """The overrides to repeat in a suggested command (all but stage, fold and hydra.*)."""
    skip = ("stage", "fold", "ckpt_path")
    return " ".join(o for o in overrides if o.split("=", 1)[0].lstrip("+~") not in skip
                    and not o.startswith("hydra"))


# ---- one stage ----------------------------------------------------------------------------------------
def build_datamodule(cfg: DictConfig) -> BCCDataModule:
    d = OmegaConf.to_container(cfg.data, resolve=True)
    return BCCDataModule(fold=cfg.fold, batch_size=cfg.stage.batch_size, seed=cfg.seed,
                         soft_targets=cfg.loss.soft_targets, **{k: v for k, v in d.items() if k != "kind"})


def build_model(cfg: DictConfig, dm: BCCDataModule, load_pretrained: bool) -> MultitaskModel:
    alpha = resolve_alpha(OmegaConf.to_container(cfg.loss, resolve=True)["alpha"], dm.positive_frequencies())
    st = cfg.stage
    # a stage may set its own focal gamma / warmup (stage 0 does); null or absent: the global setting
    gamma = cfg.loss.gamma if st.get("gamma") is None else st.gamma
    warmup = cfg.optimizer.warmup_steps if st.get("warmup_steps") is None else st.warmup_steps
    return MultitaskModel(
        backbone=OmegaConf.to_container(cfg.backbone, resolve=True), stage=int(st.name), alpha=alpha,
        gamma=gamma, loss_weights=dict(st.loss_weights), dropout=cfg.model.dropout, lr=st.lr,
        weight_decay=cfg.optimizer.weight_decay, betas=list(cfg.optimizer.betas),
        warmup_steps=warmup, last_blocks_lr_scale=st.last_blocks_lr_scale,
        trainable=list(st.trainable), image_size=cfg.data.image_size,
        bn_recalibration_batches=cfg.model.bn_recalibration_batches, channels_last=cfg.model.channels_last,
        load_pretrained=load_pretrained)


def _resume_path(ckpt_path, job: Path, required: bool) -> str | None:
    if not ckpt_path:
        return None
    path = job / "last.ckpt" if str(ckpt_path) == "last" else Path(ckpt_path)
    if path.is_file():
        return str(path)
    if required:
        raise FileNotFoundError(f"ckpt_path={ckpt_path}: {path} does not exist; nothing to resume (drop ckpt_path)")
    return None


def _save_config(cfg: DictConfig, job: Path) -> None:
    """Hydra writes .hydra/ for its own run dir; a stage run inside another job (stage 0, stage=all) gets one here."""
    try:
        if Path(HydraConfig.get().runtime.output_dir).resolve() == job.resolve():
            return
    except ValueError:
        pass
    (job / ".hydra").mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, job / ".hydra" / "config.yaml")


def train_stage(cfg: DictConfig, hint: str = "", required_resume: bool = True) -> dict:
    """Train, select, test and write the outputs of one stage; returns its metrics.json content."""
    quiet_lightning()
    stage, fold = int(cfg.stage.name), int(cfg.fold)
    out = Path(cfg.paths.output_dir).resolve()
    job = stage_dir(out, cfg.backbone.name, fold, stage)
    job.mkdir(parents=True, exist_ok=True)
    _save_config(cfg, job)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    dm = build_datamodule(cfg)
    dm.prepare_data()
    dm.setup("fit")
    start, backbone_only = start_checkpoint(out, cfg.backbone, fold, stage, hint)
    resume = _resume_path(cfg.ckpt_path, job, required_resume)
    if resume is None and _rank() == 0:
        for name in ("best.ckpt", "last.ckpt", "metrics.json", "predictions.csv"):
            (job / name).unlink(missing_ok=True)  # never hand a stale checkpoint to the next stage
    model = build_model(cfg, dm, load_pretrained=stage == 1 and start is None)
    if start is not None:
        load_start(model.net, start, backbone_only)
    logger = loggers.make_logger(cfg, job, stage)
    failed = True
    try:
        ckpt = ModelCheckpoint(dirpath=job, filename="best", monitor=cfg.stage.monitor, mode=cfg.stage.monitor_mode,
                               enable_version_counter=False, auto_insert_metric_name=False)
        # every epoch's end (save_last=True would only follow an improved best.ckpt): what ckpt_path=last resumes
        last = ModelCheckpoint(dirpath=job, filename="last", monitor=None, save_top_k=1, enable_version_counter=False)
        trainer = L.Trainer(**OmegaConf.to_container(cfg.trainer, resolve=True), max_epochs=cfg.stage.max_epochs,
                            default_root_dir=job, logger=logger,
                            callbacks=[StageCallback(stage, cfg.stage.trainable), ckpt, last])
        t0 = time.perf_counter()
        trainer.fit(model, datamodule=dm, ckpt_path=resume)
        seconds = time.perf_counter() - t0
        best = ckpt.best_model_path or last.best_model_path
        # a logger-free evaluator re-scores the selected checkpoint; under DDP the trainer itself must,
        # since every process takes part in the metrics' synchronisation
        evaluator = trainer if trainer.world_size > 1 else L.Trainer(
            accelerator=cfg.trainer.accelerator, devices=1, logger=False, enable_progress_bar=False,
            enable_model_summary=False, enable_checkpointing=False)
        val = evaluator.validate(model, datamodule=dm, ckpt_path=best, verbose=False)[0]
        test = trainer.test(model, datamodule=dm, ckpt_path=best, verbose=False)[0]
        if not trainer.is_global_zero:
            failed = False
            return {"val": nested(val, "val"), "test": nested(test, "test")}
        preds = model.test_predictions(list(dm.table["image_id"]), fold)
        write_csv(preds, job / "predictions.csv", float_format="%.6f")
        metrics = {
            "experiment": cfg.experiment_name, "backbone": cfg.backbone.name, "timm_name": cfg.backbone.timm_name,
            "fold": fold, "stage": stage, "start": start_description(stage, cfg.backbone), "seed": int(cfg.seed),
            "epochs": int(trainer.current_epoch), "train_seconds": round(seconds, 2),
            "image_size": int(cfg.data.image_size), "monitor": cfg.stage.monitor,
            "best_score": float(ckpt.best_model_score) if ckpt.best_model_score is not None else None,
            "best_checkpoint": Path(best).name, "n_images": {s: len(dm.rows(s)) for s in ("train", "val", "test")},
            "devices": int(trainer.world_size), "val": nested(val, "val"), "test": nested(test, "test"),
        }
        if cfg.logger.get("log_images"):
            rows = dm.rows("test")[:8]
            caps = [f"{i}: y_bcc={int(y)} p_bcc={p:.2f}" for i, y, p in
                    zip(dm.image_ids(rows), dm.labels(rows)[:, 0], preds["p_bcc"].to_numpy()[:8])]
            loggers.log_example_images(logger, dm.images[rows], caps)
        with atomic_path(job / "metrics.json") as tmp:  # written last: its presence marks the job done
            tmp.write_text(json.dumps(metrics, indent=2) + "\n")
        failed = False
        return metrics
    finally:
        loggers.finish(logger, failed)


# ---- jobs and the protocol ----------------------------------------------------------------------------
def _rank() -> int:
    return int(os.environ.get("RANK", os.environ.get("SLURM_PROCID", "0")))


def _processes(trainer: DictConfig) -> int:
    """How many processes a DDP trainer config asks for (1 for single-device strategies)."""
    if not str(trainer.get("strategy", "auto")).startswith("ddp"):
        return 1
    devices = trainer.get("devices", 1)
    if isinstance(devices, int) and devices > 0:
        return devices
    if not isinstance(devices, str) and hasattr(devices, "__len__"):  # a list of device ids
        return len(devices)
    import torch

    return torch.cuda.device_count() if trainer.get("accelerator") in ("gpu", "cuda") else os.cpu_count() or 1


def _launched_externally() -> bool:
    """torchrun or SLURM (one task per device) already started every DDP process."""
    return "LOCAL_RANK" in os.environ or int(os.environ.get("SLURM_NTASKS", "1")) > 1


def launch_ddp(cfg: DictConfig, overrides: Sequence[str], n: int) -> None:
    """Run this one job as ``torchrun --standalone --nproc_per_node=n -m bcc.train <overrides>``.

    Lightning would otherwise re-run the whole command line in each child (a whole sweep under
    --multirun, or Hydra's saved flat config, which cannot compose the next stage of ``stage=all``).
    """
    build_datamodule(cfg).prepare_data()  # once, before the processes race for it
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}",
           "-m", "bcc.train", *[o for o in overrides if not o.startswith("hydra.")]]
    print(f"[bcc] DDP with {n} processes: {' '.join(cmd[1:])}")
    proc = subprocess.run(cmd, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"[bcc] DDP job failed (exit {proc.returncode}): {' '.join(cmd)}")


def done_metrics(cfg: DictConfig, stage: int) -> dict | None:
    """metrics.json of a finished stage (written last, atomically), for ``skip_done=true``."""
    job = stage_dir(Path(cfg.paths.output_dir).resolve(), cfg.backbone.name, cfg.fold, stage)
    if (job / "metrics.json").is_file() and (job / "best.ckpt").is_file():
        return json.loads((job / "metrics.json").read_text())
    return None


def run_job(cfg: DictConfig, compose: Composer, overrides: Sequence[str]) -> dict[int, dict]:
    """One Hydra job: its stage, or every stage for ``stage=all``; stage 1 runs a missing stage 0 first.

    ``skip_done=true`` keeps stages whose metrics.json exists (a re-launched sweep redoes only the
    interrupted jobs, from scratch). A DDP trainer config starts its processes through ``launch_ddp``.
    """
    if cfg.get("external") is not None:
        from bcc.external import evaluate_external

        return evaluate_external(cfg)
    n = _processes(cfg.trainer)
    if n > 1 and not _launched_externally():
        launch_ddp(cfg, overrides, n)
        return {s: m for s in [0, *sequence(cfg.stage.name, cfg.backbone)] if (m := done_metrics(cfg, s))}
    hint = _hint(overrides)
    results: dict[int, dict] = {}
    whole = str(cfg.stage.name) == "all"
    for s in sequence(cfg.stage.name, cfg.backbone):
        scfg = cfg if str(cfg.stage.name) == str(s) else compose(_with(overrides, "stage", f"'{s}'"))
        if cfg.skip_done and (m := done_metrics(scfg, s)) is not None:
            print(f"[bcc] skip_done: {cfg.backbone.name} fold {cfg.fold} stage {s} is complete")
            results[s] = m
            continue
        stage0 = stage_dir(Path(cfg.paths.output_dir).resolve(), cfg.backbone.name, cfg.fold, 0) / "best.ckpt"
        if s == 1 and not whole and needs_stage0(cfg.backbone) and not stage0.is_file():
            print(f"[bcc] no ImageNet weights and no {stage0}: training stage 0 (from scratch) first")
            results[0] = train_stage(compose(_with(overrides, "stage", "'0'")), hint, required_resume=False)
        results[s] = train_stage(scfg, hint, required_resume=not whole)
    return results


@hydra.main(config_path="../conf", config_name="config", version_base="1.3")
def _hydra_main(cfg: DictConfig) -> None:
    overrides = list(HydraConfig.get().overrides.task)
    results = run_job(cfg, lambda o: hydra.compose(config_name="config", overrides=o), overrides)
    if _rank() != 0:
        return
    for m in results.values():
        t = m["test"]
        print(f"[bcc] {m['backbone']} fold {m['fold']} stage {m['stage']}: test BCC accuracy "
              f"{t.get('bcc', {}).get('accuracy', float('nan')):.3f}, rule accuracy "
              f"{t.get('rule', {}).get('accuracy', float('nan')):.3f} -> {Path(cfg.paths.output_dir)}")


_SWITCHES = ("--multirun", "-m", "--run", "-r", "--resolve")


def main(argv: Sequence[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    # Hydra's argparse cannot read overrides on both sides of `--multirun`; users type them so.
    switches = [a for a in argv if a in _SWITCHES]
    rest = normalize_overrides([a for a in argv if a not in _SWITCHES])
    if _rank() > 0:  # a DDP process other than the first: rank 0 writes the job's .hydra/ and log
        rest += ["hydra.output_subdir=null", "hydra/job_logging=disabled"]
    sys.argv = [sys.argv[0], *switches, *rest]
    _hydra_main()


def run(overrides: Iterable[str] = ()) -> dict[int, dict]:
    """One job from Python, exactly as ``python -m bcc.train <overrides>`` (no sweeps); stage → metrics."""
    from hydra import compose, initialize_config_dir

    ovr = normalize_overrides(list(overrides))
    with initialize_config_dir(str(CONF_DIR), version_base="1.3", job_name="bcc"):
        cfg = compose(config_name="config", overrides=ovr)
        return run_job(cfg, lambda o: compose(config_name="config", overrides=o), ovr)


def run_protocol(overrides: Iterable[str] = (), folds: Iterable[int] | None = None,
                 verbose: bool = True) -> pd.DataFrame:
    """Every fold's whole protocol (``stage=all``) in this process; prints and returns the stage-3 summary.

    ``make demo`` runs ``run_protocol(["experiment=demo"])``, the same as
    ``python -m bcc.train experiment=demo stage=all fold=0-4 --multirun``.
    """
    from hydra import compose, initialize_config_dir

    ovr = normalize_overrides(list(overrides))
    with initialize_config_dir(str(CONF_DIR), version_base="1.3", job_name="bcc"):
        base = compose(config_name="config", overrides=ovr)
    for k in (range(int(base.data.k)) if folds is None else folds):
        run(_with(_with(ovr, "fold", int(k)), "stage", "all"))
    if verbose:
        print(format_summary(base.paths.output_dir, base.backbone.name))
    return summary_table(base.paths.output_dir, base.backbone.name)


if __name__ == "__main__":
    main()
