"""The training config's contract: which keys exist, checked before any work, and composing it from Python.

Nodes with a ``_target_`` (data, model, loss, optimizer, callbacks, trainer, logger) are checked against
their target's parameters (``bcc.core.config.check_targets``); the plain nodes (stage, backbone, paths,
the top level) against the keys their YAML declares (:func:`declared_keys`). So a typo — in an override, ``+data.image_sz=64``, or in an
experiment file — stops the job at once with the key's name, before stage 0 trains for minutes.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from functools import cache
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from bcc.core.config import (
    CONF_DIR,
    Range,
    check_keys,
    check_ranges,
    check_targets,
    normalize_overrides,
    override_key,
)
from bcc.core.errors import BadInput, UsageError
from bcc.core.patterns import OUTPUTS
from bcc.data.images import IMAGE_SIZE
from bcc.models.backbones import check_timm_name
from bcc.models.metrics import METRICS, RULE

Composer = Callable[[list[str]], DictConfig]


def _yaml_keys(path: Path, node: str | None = None) -> set[str]:
    """The keys `path` (a file of conf/) declares, at its top or under `node`; its defaults list aside."""
    cfg = OmegaConf.load(path)
    return {str(k) for k in (cfg if node is None else OmegaConf.select(cfg, node)) if k != "defaults"}


def group_keys(group: str) -> set[str]:
    """The keys of a plain config group's nodes, as its options (``conf/<group>/*.yaml``) declare them: every
    option declares the same ones, so a key misspelt in one of them is an error here too, naming the file."""
    files = sorted((CONF_DIR / group).glob("*.yaml"))
    keys = _yaml_keys(files[0])
    for f in files[1:]:
        if _yaml_keys(f) != keys:
            raise UsageError(f"{f}: keys {sorted(_yaml_keys(f) ^ keys)} differ from {files[0].name}'s; every option "
                             f"of conf/{group}/ declares the same keys")
    return keys


@cache
def declared_keys() -> dict[str, set[str]]:
    """What the YAML declares for the plain (not instantiated) nodes: the top level (``conf/config.yaml``'s keys
    and config groups), ``stage``, ``backbone``, ``paths`` (their groups) and ``external`` (experiment=external).
    Read from conf/, so a new key is added in one place: its YAML."""
    groups = {str(next(iter(d))) for d in OmegaConf.load(CONF_DIR / "config.yaml").defaults if not isinstance(d, str)}
    nodes = {g for g in groups if " " not in g and not _merges_into_top(g)}  # not `override ...`, `optional ...`
    return {"": _yaml_keys(CONF_DIR / "config.yaml") - {"hydra"} | nodes,
            "stage": group_keys("stage"), "backbone": group_keys("backbone"), "paths": group_keys("paths"),
            "external": _yaml_keys(CONF_DIR / "experiment" / "external.yaml", "external")}


def _merges_into_top(group: str) -> bool:
    """A group whose options are ``# @package _global_`` (experiment, debug, ...) adds no node of its own."""
    return any("@package _global_" in f.read_text().split("\n", 1)[0] for f in (CONF_DIR / group).glob("*.yaml"))
#: every numeric option of a training job and what it accepts (checked with the keys, before a job folder exists)
RANGES = {
    "seed": Range(int, 0, 2**32 - 1, why="numpy's seed range"),
    "stage.lr": Range(float, 0, 1, low_open=True),
    "stage.last_blocks_lr_scale": Range(float, 0, 1000, low_open=True),
    "stage.batch_size": Range(int, 1, 65536),
    "stage.max_epochs": Range(int, 0, 100_000, why="0: the stage keeps the model it starts from (a control)"),
    "stage.gamma": Range(float, 0, 10),
    "stage.warmup_steps": Range(int, 0, 10_000_000),
    "data.k": Range(int, 2, 100, why="k-fold cross-validation needs 2 folds or more"),
    "data.split_seed": Range(int, 0, 2**32 - 1),
    "data.image_size": Range(int, *IMAGE_SIZE, why="the network's input side in pixels"),
    "data.eval_batch_size": Range(int, 1, 65536, nullable=True),
    "data.val_fraction": Range(float, 0, 0.9, low_open=True,
                               why="the validation slice selects the checkpoint; it cannot be empty"),
    "data.num_workers": Range(int, 0, 256),
    "data.frozen_views": Range(int, 0, 64, why="0: no frozen activations; 1: view 0 only (no augmentation)"),
    "data.frozen_max_gb": Range(float, 0, 100_000, low_open=True),
    "model.net.dropout": Range(float, 0, 1, high_open=True),
    "model.bn_recalibration_batches": Range(int, 0, 100_000),
    "stage.loss_weights.diagnosis": Range(float, 0, 1000),
    "stage.loss_weights.negative": Range(float, 0, 1000),
    "stage.loss_weights.patterns": Range(float, 0, 1000),
    "trainer.check_val_every_n_epoch": Range(int, 1, 100_000),
    "trainer.log_every_n_steps": Range(int, 1, 1_000_000),
    "trainer.gradient_clip_val": Range(float, 0, 1e6, low_open=True, nullable=True),
    "external.stage": Range(int, 0, 3),
    "external.batch_size": Range(int, 1, 65536),
}
#: what the protocol itself passes to each instantiated node (never set in the yaml)
GIVEN = {"model": ("net", "loss", "optimizer"), "trainer": ("callbacks", "logger"), "logger": ("config",)}


def check_config(cfg: DictConfig) -> None:
    """Raise ``UsageError`` naming the first unknown key of the composed training config."""
    for node, keys in declared_keys().items():
        if node == "" or cfg.get(node) is not None:
            check_keys(cfg if node == "" else cfg[node], keys, node)
    if cfg.data.get("root") in (None, ""):
        raise UsageError("data.root is not set: point it at your dataset directory (`data=csv data.root=/path`, "
                         "docs/dataset.md)")
    chain = str(cfg.stage.name) == "all"  # its stage keys are null: each stage of the chain is checked with its own
    check_ranges(cfg, {k: r for k, r in RANGES.items()
                       if not (chain and k.startswith("stage.") and OmegaConf.select(cfg, k) is None)})
    check_timm_name(str(cfg.backbone.name), cfg.backbone.get("timm_name"))
    check_targets(cfg, ["data", "model", "loss", "optimizer", "trainer", "logger"], GIVEN)
    _check_augment(cfg.data.get("augment"))
    _check_datamodule(cfg.data)
    _check_devices(cfg.trainer)
    fold, k = cfg.fold, cfg.data.k
    if not isinstance(fold, int) or not 0 <= fold < int(k):
        raise UsageError(f"fold={fold} is outside 0..{int(k) - 1} (data.k={k}); e.g. fold=0, or fold=0-{int(k) - 1} "
                         f"--multirun for every fold")
    for name in cfg.callbacks:
        check_targets(cfg, [f"callbacks.{name}"])
    _check_optimized_metric(cfg.get("optimized_metric"))


def _check_augment(augment: DictConfig | None) -> None:
    """Build each training transform once: albumentations checks its own arguments (a probability above 1,
    a reversed range) — here, before a job folder exists, and named by its key."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    for name, node in (augment or {}).items():
        try:
            instantiate(node)
        except InstantiationException as e:
            cause = " ".join(str(e.__cause__ or e).split())
            raise UsageError(f"data.augment.{name!s}: {cause}") from None


def _check_datamodule(data: DictConfig) -> None:
    """Build the datamodule once (its constructor reads no file): its own checks — the sampler, the resize and
    colour names — answer before anything is written, with the datamodule's message, not Hydra's wrapper."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    try:
        instantiate(data, batch_size=1, augment=None)
    except InstantiationException as e:
        if isinstance(e.__cause__, BadInput):
            raise e.__cause__ from None
        raise


def _check_optimized_metric(name: str | None) -> None:
    """A sweep ranks jobs by it, so it must be one the job logs on the validation slice — never the test fold."""
    if name is None:
        return
    logged = validation_metrics()
    if name not in logged:
        test = " (the test fold: selecting on it leaks it into the choice)" if str(name).startswith("test/") else ""
        raise UsageError(f"optimized_metric={name} is not a validation metric the job logs{test}; e.g. "
                         f"val/bcc/auroc, val/patterns/auroc, val/rule/accuracy")


def validation_metrics() -> set[str]:
    """Every ``val/<output>/<metric>`` training logs and keeps in metrics.json (``models.metrics.OutputMetrics``)."""
    return {f"val/{o}/{m}" for o in (*OUTPUTS, RULE, "patterns") for m in METRICS}


def optimized_value(cfg: DictConfig, results: dict[int, dict]) -> float | None:
    """``optimized_metric`` of the job's last stage (its metrics.json), what the training task returns."""
    name = cfg.get("optimized_metric")
    if name is None or not results:
        return None
    _, output, metric = name.split("/")
    return float(results[max(results)]["val"].get(output, {}).get(metric, float("nan")))


def hint(overrides: Iterable[str]) -> str:
    """The overrides to repeat in a suggested command (all but stage, fold, ckpt_path and hydra.*)."""
    return " ".join(o for o in overrides if override_key(o) not in ("stage", "fold", "ckpt_path")
                    and not o.startswith("hydra"))


def compose_config(overrides: Sequence[str] = ()) -> tuple[DictConfig, Composer]:
    """The training config for `overrides` (CLI shorthands allowed) and a composer for sibling jobs,
    outside a running Hydra app (``run_protocol``, ``make demo``, the tests)."""
    from hydra import compose, initialize_config_dir

    def composer(ovr: list[str]) -> DictConfig:
        with initialize_config_dir(str(CONF_DIR), version_base="1.3", job_name="bcc"):
            return compose(config_name="config", overrides=ovr)

    return composer(normalize_overrides(list(overrides))), composer


def _check_devices(trainer: DictConfig) -> None:
    """Device settings Lightning would only fail on later (or half-run: extra processes crashing)."""
    devices, strategy, accelerator = trainer.get("devices", 1), str(trainer.get("strategy", "auto")), \
        str(trainer.get("accelerator", "cpu"))
    many = (isinstance(devices, int) and (devices > 1 or devices == -1)) or (
        not isinstance(devices, (int, str)) and len(devices) > 1)
    if many and not strategy.startswith("ddp"):
        raise UsageError(f"trainer.devices={devices} needs one process per device: add trainer=ddp "
                         f"(e.g. `trainer=ddp trainer.accelerator={accelerator} trainer.devices={devices}`)")
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise UsageError(f"trainer.accelerator={accelerator} but no CUDA GPU is visible here; use trainer=cpu "
                         f"(or trainer=ddp trainer.accelerator=cpu for CPU processes)")
