"""The training config's contract: which keys exist, checked before any work, and composing it from Python.

Nodes with a ``_target_`` (data, model, loss, optimizer, callbacks, trainer, logger) are checked against
their target's parameters (``bcc.core.config.check_targets``); the plain nodes (the top level, stage,
backbone, paths, external) are Hydra structured configs (``bcc.core.settings.TrainConfig``), so Hydra refuses
an unknown key when it composes the config and ``core.settings.check_schema`` one added with ``+``. So a
typo — in an override, ``+data.image_sz=64``, or in an experiment file — stops the job at once with the
key's name, before stage 0 trains for minutes.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import torch
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf

from bcc.core.config import CONF_DIR, check_ranges, check_targets, normalize_overrides, override_key
from bcc.core.errors import BadInput, UsageError
from bcc.core.patterns import OUTPUTS
from bcc.core.settings import TrainConfig, check_schema, ranges_of
from bcc.models.backbones import check_timm_name
from bcc.models.metrics import METRICS, RULE

Composer = Callable[[list[str]], DictConfig]
#: every numeric option of a training job and what it accepts, declared beside its field (``core.settings``)
RANGES = ranges_of(TrainConfig)
#: what the protocol itself passes to each instantiated node (never set in the yaml)
GIVEN = {"model": ("net", "loss", "optimizer"), "trainer": ("callbacks", "logger"), "logger": ("config",)}


def check_config(cfg: DictConfig) -> None:
    """Raise ``UsageError`` naming the first unknown key of the composed training config."""
    check_schema(cfg, TrainConfig)
    unset = sorted(OmegaConf.missing_keys(cfg))
    if unset:
        raise UsageError(f"{', '.join(unset)}: not set (???); give {'them' if len(unset) > 1 else 'it'} a value, on "
                         f"the command line or in the experiment file")
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
            try:
                return compose(config_name="config", overrides=ovr)
            except HydraException as e:  # an unknown key or option, a value of the wrong type
                cause = f": {' '.join(str(e.__cause__).split())}" if e.__cause__ else ""
                raise UsageError(f"{' '.join(str(e).split())}{cause}") from None

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
