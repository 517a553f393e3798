"""The training protocol: one stage of one fold, a Hydra job (one stage or ``stage=all``), every fold.

``train_stage`` builds everything from the config with ``hydra.utils.instantiate`` — datamodule
(``data``), loss (``loss``, its ``alpha`` from the training split), network and LightningModule
(``model``), optimizer (``optimizer``, a partial), callbacks, logger and trainer — starts from the
previous stage's checkpoint (``bcc.training.stages``), fits, re-scores the selected ``best.ckpt`` on
validation and the test fold, and writes ``predictions.csv`` and, last, ``metrics.json``.
Outputs: ``<paths.output_dir>/<backbone>/fold<k>/stage<s>/`` (``bcc.core.layout``).
"""
from __future__ import annotations

import json
import logging
import signal
import time
import warnings
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import cast

import lightning as L
import pandas as pd
import torch
from hydra.utils import instantiate
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from bcc.core import jobs
from bcc.core.config import normalize_overrides, with_override
from bcc.core.errors import Interrupted, UsageError
from bcc.core.io import write_json
from bcc.core.layout import (
    BEST,
    CALIBRATION,
    JOB_CONFIG,
    JOB_OVERRIDES,
    LAST,
    METRICS,
    PREDICTIONS,
    VAL_PREDICTIONS,
    read_job_config,
    stage_dir,
)
from bcc.core.log import get_logger, rank
from bcc.core.machine import machine
from bcc.core.patterns import HEADS, OUTPUTS
from bcc.core.predictions import read_predictions, write_predictions
from bcc.data.contract import dataset_hash
from bcc.models import activations
from bcc.models.calibration import fit_calibration
from bcc.models.checkpoint import load_weights, read_checkpoint
from bcc.models.losses import resolve_alpha
from bcc.models.metrics import nested
from bcc.models.network import input_level
from bcc.models.serialization import safe_load
from bcc.training import ddp, loggers
from bcc.training.config import Composer, check_config, compose_config, hint
from bcc.training.datamodule import BCCDataModule
from bcc.training.module import MultitaskModule
from bcc.training.stages import needs_stage0, resume_command, sequence, start_checkpoint, start_description
from bcc.training.summary import format_summary, summary_table

log = get_logger(__name__)


def quiet_lightning() -> None:
    """Drop Lightning's advice that does not apply here (workers, frozen modules, reused folders, tips)."""
    for pattern in (".*does not have many workers.*", r".*module\(s\) in eval mode.*", ".*exists and is not empty.*",
                    ".*callbacks used to create the checkpoint.*", ".*LeafSpec.*", ".*is deprecated.*",
                    ".*when logging on epoch level in distributed setting.*"):
        warnings.filterwarnings("ignore", message=pattern)
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logging.getLogger(name).setLevel(logging.WARNING)


def prepare_dataset(cfg: DictConfig) -> None:
    """Generate the synthetic set when asked and absent; write/reuse labels.csv and splits.csv."""
    instantiate(cfg.data, batch_size=1).prepare_data()  # batch_size: a stage=all config has no stage yet


# ---- one stage ----------------------------------------------------------------------------------------
def build_module(cfg: DictConfig, dm: BCCDataModule, load_pretrained: bool) -> MultitaskModule:
    """The stage's LightningModule: network (ImageNet weights only when `load_pretrained`), loss, optimizer."""
    loss_cfg = cast(dict, OmegaConf.to_container(cfg.loss, resolve=True))
    alpha = resolve_alpha(loss_cfg["alpha"], dm.positive_frequencies())
    loss = instantiate(cfg.loss, alpha=alpha, _convert_="all")
    weights = {} if load_pretrained else {"pretrained": False, "weights": None}
    net = instantiate(cfg.model.net, **weights)
    return instantiate(cfg.model, net=net, loss=loss, optimizer=instantiate(cfg.optimizer))


def starting_module(cfg: DictConfig, dm: BCCDataModule, start: Path | None, backbone_only: bool) -> MultitaskModule:
    """The stage's LightningModule holding the weights the stage starts from (`start`: its predecessor's
    best.ckpt; `backbone_only`: the stage 0 -> 1 handover, whose heads are drawn afresh)."""
    model = build_module(cfg, dm, load_pretrained=int(cfg.stage.name) == 1 and start is None)
    if start is not None:
        load_weights(model.net, start, backbone_only)
    if backbone_only:
        model.net.redraw_heads(seed=cfg.seed + 1)  # not stage 0's initial heads (MultitaskNet.redraw_heads)
    return model


def _resume_path(ckpt_path, job: Path, required: bool, record: dict) -> str | None:
    if not ckpt_path:
        return None
    path = job / LAST if str(ckpt_path) == "last" else Path(ckpt_path)
    if path.is_file():
        ckpt = read_checkpoint(path)  # refuses a file carrying pickled code before Lightning opens it
        _check_origin(path, ckpt, record, f"ckpt_path={ckpt_path}")
        if "optimizer_states" not in ckpt:
            raise UsageError(f"ckpt_path={ckpt_path}: {path} holds weights only (a stage's selected best.ckpt), "
                             f"not the optimizer state a resumed run needs; resume from the job's last.ckpt "
                             f"(ckpt_path=last), or drop ckpt_path to train afresh")
        return str(path)
    if required or str(ckpt_path) != "last":
        raise UsageError(f"ckpt_path={ckpt_path}: {path} does not exist; nothing to resume (drop ckpt_path)")
    return None


ORIGIN_KEYS = ("fold", "stage", "backbone", "image_size", "dataset_hash")


def _check_origin(path: Path, ckpt: dict, record: dict, what: str, keys: Sequence[str] = ORIGIN_KEYS,
                  fix: str = "a job resumes only from its own checkpoint (ckpt_path=last), else drop ckpt_path to "
                             "train it afresh") -> None:
    """A resumed checkpoint must come from this very job: same fold, stage, backbone, input size and data.
    Its own record (``hyper_parameters.trained_on``) says; a checkpoint from before it was kept is judged by
    the config saved beside it. Resuming fold 1 from fold 0's checkpoint would train on fold 1's test images."""
    origin = dict((ckpt.get("hyper_parameters") or {}).get("trained_on") or {})
    if not origin:
        try:
            saved = read_job_config(path.parent)
            origin = {} if saved is None else {
                "fold": OmegaConf.select(saved, "fold"), "stage": OmegaConf.select(saved, "stage.name"),
                "backbone": OmegaConf.select(saved, "backbone.name"),
                "image_size": OmegaConf.select(saved, "data.image_size")}
        except OmegaConfBaseException:
            origin = {}
    diffs = [f"{k} {origin[k]} (this job: {record[k]})" for k in keys
             if origin.get(k) is not None and record.get(k) is not None and str(origin[k]) != str(record[k])]
    if diffs:
        raise UsageError(f"{what}: {path} was trained with {', '.join(diffs)}; {fix}")


def _save_config(cfg: DictConfig, job: Path, overrides: Sequence[str]) -> None:
    """The job's config and the overrides that composed it (as Hydra would save them in its run folder)."""
    (job / JOB_CONFIG).parent.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, job / JOB_CONFIG)
    OmegaConf.save(OmegaConf.create(list(overrides)), job / JOB_OVERRIDES)


def train_stage(cfg: DictConfig, overrides: Sequence[str] = (), required_resume: bool = True) -> dict:
    """Train, select, test and write the outputs of one stage; returns its metrics.json content.

    `overrides`: those that composed `cfg` (saved beside it, and repeated in the commands the messages
    suggest). The job folder is written under its lock (``bcc.core.jobs``), and only after every
    check that can refuse the job has passed."""
    quiet_lightning()
    check_config(cfg)
    stage, fold = int(cfg.stage.name), int(cfg.fold)
    out = Path(cfg.paths.output_dir).resolve()
    job = stage_dir(out, cfg.backbone.name, fold, stage)
    start, backbone_only = start_checkpoint(out, cfg.backbone, fold, stage, hint(overrides))
    if start is not None:
        read_checkpoint(start)  # a predecessor carrying pickled code is refused before anything is written
    if stage == 1 and start is None and cfg.backbone.weights:
        safe_load(cfg.backbone.weights, what="backbone.weights")  # likewise for the ImageNet weights file
    record = jobs.trained_on(cfg.backbone.name, fold, stage, start, image_size=int(cfg.data.image_size),
                             k=int(cfg.data.k), split_seed=int(cfg.data.split_seed))
    resume = _resume_path(cfg.ckpt_path, job, required_resume, record)  # before the dataset is touched
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    dm: BCCDataModule = instantiate(cfg.data)
    dm.prepare_data()
    record.update(dataset=str(dm.root.resolve()), dataset_hash=dataset_hash(dm.root, dm.allow_outside))
    if resume is not None:
        _check_origin(Path(resume), read_checkpoint(resume), record, f"ckpt_path={cfg.ckpt_path}")
    if start is not None:  # a stage continues its predecessor on the same fold and data, never another's
        _check_origin(start, read_checkpoint(start), record, f"stage {stage} of fold {fold} starts from stage "
                      f"{stage - 1}", ("fold", "backbone", "dataset_hash"),
                      f"train stage {stage - 1} on this data first: `python -m bcc.train stage={stage - 1} "
                      f"fold={fold} {hint(overrides)}`")
    dm.setup("fit")
    first = rank() == 0
    lock: AbstractContextManager[dict] = jobs.locked(job) if first else nullcontext({})
    with lock as stale:
        if first:
            if stale and resume is None:
                log.info(f"[bcc] {job}: an earlier run did not finish ({jobs.describe(stale)}); training it again")
            _save_config(cfg, job, overrides)
            if resume is None:
                for name in (BEST, LAST, METRICS, PREDICTIONS, VAL_PREDICTIONS, CALIBRATION):
                    (job / name).unlink(missing_ok=True)  # never hand a stale checkpoint to the next stage
        model = starting_module(cfg, dm, start, backbone_only)
        model.hparams["trained_on"] = record  # into every checkpoint: what ckpt_path= is compared with
        if int(cfg.stage.max_epochs) > 0:
            learnable = record_stage_labels(cfg, model, dm)
        else:
            learnable = []
            log.info(f"[bcc] stage {stage} of fold {fold}: stage.max_epochs=0 — the model it starts from is kept as "
                     f"this stage's, untrained further")
        model.frozen = serve_frozen(cfg, model, dm)
        try:
            metrics = _fit_and_score(cfg, model, dm, job, resume, fit=bool(learnable))
        except SIGTERMException:
            raise Interrupted(signal.SIGTERM, f"stage {stage} of fold {fold} was stopped (SIGTERM) and is unfinished "
                                              f"in {job}; resume it: `{resume_command(stage, fold, hint(overrides))}`"
                              ) from None
        if first:
            jobs.finished(job)
    return metrics


def serve_frozen(cfg: DictConfig, model: MultitaskModule, dm: BCCDataModule) -> dict:
    """Have the datamodule serve the stage's frozen activations (``bcc.models.activations``) where the stage has a
    frozen part and ``data.frozen_views`` > 0; what was done, for metrics.json."""
    level = input_level(cfg.stage.trainable)
    gpu = str(cfg.trainer.accelerator) in ("gpu", "cuda", "auto") and torch.cuda.is_available()
    device = torch.device("cuda", torch.cuda.current_device()) if gpu else torch.device("cpu")
    before = activations.stats()["seconds"]
    served = dm.serve_frozen(model.net, level, device)
    return {"level": level if served else "image", "views": dm.frozen_views if served else 0,
            "seconds": round(activations.stats()["seconds"] - before, 1)}


def record_stage_labels(cfg: DictConfig, model: MultitaskModule, dm: BCCDataModule) -> list[str]:
    """Write into the network which outputs this stage trains, on how many labels; return those that can
    learn (both classes present). A stage none of whose outputs can learn — stage 3 on a dataset without
    pattern labels — is said so, and kept as its predecessor's model instead of failing in Lightning."""
    stage, weights = int(cfg.stage.name), dict(cfg.stage.loss_weights)
    heads = [h for h in HEADS if f"{h}_head" in cfg.stage.trainable and float(weights.get(h, 1.0)) != 0.0]
    counts = dm.labelled_counts("train")
    model.net.record_training(heads, counts, stage)
    trained = dict(zip(OUTPUTS, model.net.trained, strict=True))
    outputs = [o for h in heads for o in HEADS[h]]
    learnable = [o for o in outputs if trained[o]]
    idle = [f"{o} ({counts[o]['labelled']} labelled, {counts[o]['positive']} positive)" for o in outputs
            if not trained[o]]
    where = f"stage {stage} of fold {cfg.fold}"
    if not learnable:
        log.info(f"[bcc] {where}: nothing to train — the training split labels none of {', '.join(outputs)} with "
                 f"both classes ({'; '.join(idle)}); the model it starts from is kept as this stage's, with these "
                 f"outputs marked 'not trained'")
    elif idle:
        log.info(f"[bcc] {where} trains {', '.join(learnable)}; not trained (no labels of both classes): "
                 f"{'; '.join(idle)}")
    return learnable


def _fit_and_score(cfg: DictConfig, model: MultitaskModule, dm: BCCDataModule, job: Path, resume: str | None,
                   fit: bool = True) -> dict:
    """Fit (unless `fit` is false: nothing to train), re-score the selected best.ckpt on validation and test,
    write the job's outputs (metrics.json last)."""
    stage, fold = int(cfg.stage.name), int(cfg.fold)
    logger = loggers.build(cfg)
    failed = True
    try:
        callbacks = {name: instantiate(node) for name, node in cfg.callbacks.items()}
        ckpt, last = callbacks["best_checkpoint"], callbacks["last_checkpoint"]
        trainer: L.Trainer = instantiate(cfg.trainer, callbacks=list(callbacks.values()), logger=logger)
        # a logger-free evaluator re-scores the selected checkpoint; under DDP the trainer itself must,
        # since every process takes part in gathering the outputs
        evaluator = trainer if trainer.world_size > 1 else L.Trainer(
            accelerator=cfg.trainer.accelerator, devices=1, logger=False, enable_progress_bar=False,
            enable_model_summary=False, enable_checkpointing=False)
        t0 = time.perf_counter()
        if fit:
            trainer.fit(model, datamodule=dm, ckpt_path=resume, weights_only=True)
            best = ckpt.best_model_path or last.best_model_path
        else:
            best = None  # the starting weights, scored and saved as they are
        seconds = time.perf_counter() - t0
        val = evaluator.validate(model, datamodule=dm, ckpt_path=best, verbose=False, weights_only=True)[0]
        val_preds = model.predictions("val", list(dm.table["image_id"]), fold)
        scorer = trainer if fit else evaluator
        test = scorer.test(model, datamodule=dm, ckpt_path=best, verbose=False, weights_only=True)[0]
        if not fit and scorer.is_global_zero:
            scorer.save_checkpoint(job / BEST, weights_only=True)
            best = str(job / BEST)
        failed = False
        if not trainer.is_global_zero:
            return {"val": nested(val, "val"), "test": nested(test, "test")}
        preds = model.predictions("test", list(dm.table["image_id"]), fold)
        write_predictions(val_preds, job / VAL_PREDICTIONS)
        write_predictions(preds, job / PREDICTIONS)
        # the validation slice only, never the test fold; from the file, so anyone can refit it exactly
        calibration = fit_calibration(read_predictions(job / VAL_PREDICTIONS))
        write_json({"fitted_on": f"validation slice of fold {fold} ({len(val_preds)} images)", "outputs": calibration},
                   job / CALIBRATION)
        metrics = {
            "experiment": cfg.experiment_name, "backbone": cfg.backbone.name, "timm_name": cfg.backbone.timm_name,
            "fold": fold, "stage": stage, "start": start_description(stage, cfg.backbone), "seed": int(cfg.seed),
            "epochs": int(trainer.current_epoch), "train_seconds": round(seconds, 2),
            "train_images": int(model.images_seen),
            "images_per_second": round(model.images_seen / seconds, 1) if seconds > 0 and model.images_seen else None,
            "frozen": model.frozen,
            "trained": model.net.spec.get("trained", {}), "fitted": bool(fit),
            "image_size": int(cfg.data.image_size), "monitor": cfg.stage.monitor,
            "best_score": float(ckpt.best_model_score) if ckpt.best_model_score is not None else None,
            "best_checkpoint": Path(best).name, "n_images": {s: len(dm.rows(s)) for s in ("train", "val", "test")},
            "devices": int(trainer.world_size), "machine": machine(), "trained_on": model.hparams["trained_on"],
            "val": nested(val, "val"), "test": nested(test, "test"),
        }
        if cfg.log_test_images:
            rows = dm.rows("test")[:8]
            caps = [f"{i}: y_bcc={int(y)} p_bcc={p:.2f}" for i, y, p in
                    zip(dm.image_ids(rows), dm.labels(rows)[:, 0], preds["p_bcc"].to_numpy()[:8], strict=True)]
            loggers.log_example_images(logger, dm.images[rows], caps)
        write_json(metrics, job / METRICS)  # written last: its presence marks the job done
        return metrics
    finally:
        loggers.finish(logger, failed)


# ---- jobs and the protocol ----------------------------------------------------------------------------
def done_metrics(cfg: DictConfig, stage: int) -> dict | None:
    """metrics.json of a finished stage (written last, atomically), for ``skip_done=true``."""
    job = stage_dir(Path(cfg.paths.output_dir).resolve(), cfg.backbone.name, cfg.fold, stage)
    if (job / METRICS).is_file() and (job / BEST).is_file():
        metrics = json.loads((job / METRICS).read_text())
        if (why := jobs.stale(job, metrics)) is None:
            return metrics
        log.info(f"[bcc] skip_done: {why}")
    return None


def run_job(cfg: DictConfig, compose: Composer, overrides: Sequence[str]) -> dict[int, dict]:
    """One Hydra job: its stage, or every stage for ``stage=all``; stage 1 runs a missing stage 0 first.

    ``skip_done=true`` keeps stages whose metrics.json exists (a re-launched sweep redoes only the
    interrupted jobs, from scratch). A DDP trainer config starts its processes through ``ddp.launch``.
    """
    check_config(cfg)
    stages = sequence(cfg.stage.name, cfg.backbone)
    n = ddp.processes(cfg.trainer)
    if n > 1 and not ddp.launched_externally():
        prepare_dataset(cfg)  # once, before the processes race for it
        ddp.launch(overrides, n)
        return {s: m for s in [0, *stages] if (m := done_metrics(cfg, s))}
    results: dict[int, dict] = {}
    whole = str(cfg.stage.name) == "all"
    for s in stages:
        ovr = list(overrides) if str(cfg.stage.name) == str(s) else with_override(overrides, "stage", f"'{s}'")
        scfg = cfg if str(cfg.stage.name) == str(s) else compose(ovr)
        if cfg.skip_done and (m := done_metrics(scfg, s)) is not None:
            log.info(f"[bcc] skip_done: {cfg.backbone.name} fold {cfg.fold} stage {s} is complete")
            results[s] = m
            continue
        stage0 = stage_dir(Path(cfg.paths.output_dir).resolve(), cfg.backbone.name, cfg.fold, 0) / BEST
        if s == 1 and not whole and needs_stage0(cfg.backbone) and not stage0.is_file():
            log.info(f"[bcc] no ImageNet weights and no {stage0}: training stage 0 (from scratch) first")
            ovr0 = with_override(overrides, "stage", "'0'")
            results[0] = train_stage(compose(ovr0), ovr0, required_resume=False)
            ddp.barrier()
        results[s] = train_stage(scfg, ovr, required_resume=not whole)
        ddp.barrier()
    return results


def run(overrides: Iterable[str] = ()) -> dict[int, dict]:
    """One job from Python, exactly as ``python -m bcc.train <overrides>`` (no sweeps); stage → metrics."""
    cfg, composer = compose_config(list(overrides))
    return run_job(cfg, composer, normalize_overrides(list(overrides)))


def run_protocol(overrides: Iterable[str] = (), folds: Iterable[int] | None = None, compose: Composer | None = None,
                 verbose: bool = True) -> pd.DataFrame:
    """Every fold's whole protocol (``stage=all``) in this process; prints and returns the stage-3 summary.

    ``make demo`` runs ``run_protocol(["experiment=demo"])``, the same as
    ``python -m bcc.train experiment=demo stage=all fold=0-4 --multirun``. `compose`: the composer of a
    running Hydra app (default: compose from ``conf/`` directly).
    """
    ovr = normalize_overrides(list(overrides))
    if compose is None:
        base, compose = compose_config(ovr)
    else:
        base = compose(ovr)
    for k in (range(int(base.data.k)) if folds is None else folds):
        job = with_override(with_override(ovr, "fold", int(k)), "stage", "all")
        run_job(compose(job), compose, job)
    if verbose:
        log.info(format_summary(base.paths.output_dir, base.backbone.name))
    return summary_table(base.paths.output_dir, base.backbone.name)
