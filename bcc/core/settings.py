"""Every command's config as a Hydra structured config: its keys, their types and the ranges of its numbers.

The YAML under ``conf/`` holds the values and their comments (what ``--help`` prints); the dataclasses here
hold what a key may be. Each is registered in Hydra's ``ConfigStore`` and named first in its YAML's defaults
list (``train_schema``, ``stage/stage_schema``, ``eval_schema``, ``predict_schema`` …), so Hydra types the
composed config: an unknown key set by an override or an experiment file is refused when the config is
composed, and one added with ``+`` by :func:`check_schema` before any work. A number declares its range
beside its field (:func:`ranged`; a ``_target_`` node, whose keys are its target's parameters, declares the
ranges of its numbers in the field's ``ranges``), read by :func:`ranges_of` and checked by
``core.config.check_ranges`` (exit 2 naming the key and the range). Defaults are ``MISSING``: the YAML gives
every value, so merging a schema never overrides one.

A ranged field is typed ``Any``: its :class:`~bcc.core.config.Range` is its type, and checking it here
names the range (``stage.batch_size=abc: expected a whole number in [1, 65536]``) where Hydra's own
conversion would not.
"""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig

from bcc.core.config import Range
from bcc.core.errors import UsageError

__all__ = ["IMAGE_SIZE", "BackboneConfig", "EvalConfig", "EvalSettings", "ExplainConfig", "ExportConfig", "ExternalConfig",
           "LossWeights", "PathsConfig", "PredictConfig", "StageConfig", "TrainConfig", "check_schema", "ranged",
           "ranges_of"]

_RANGE, _RANGES = "bcc_range", "bcc_ranges"
IMAGE_SIZE = (16, 4096)  # the network input sides bcc trains and serves (data.image_size)


def ranged(rng: Range, default: Any = MISSING) -> Any:
    """A field whose value must lie in `rng`."""
    return field(default=default, metadata={_RANGE: rng})


def targeted(**ranges: Range) -> Any:
    """A ``_target_`` node's field: its keys are its target's parameters (``core.config.check_targets``); the
    ranges of its numbers, by key under the node (``net.dropout``)."""
    return field(default=MISSING, metadata={_RANGES: ranges})


# ---- training (conf/config.yaml and its groups) -----------------------------------------------------------
@dataclass
class LossWeights:
    diagnosis: Any = ranged(Range(float, 0, 1000))
    negative: Any = ranged(Range(float, 0, 1000))
    patterns: Any = ranged(Range(float, 0, 1000))


@dataclass
class StageConfig:
    """A training stage's settings (``conf/stage/<s>.yaml``; null in ``stage=all``, each stage has its own)."""

    name: Any = MISSING                       # 0, 1, 2, 3 or all
    trainable: list[str] | None = MISSING
    lr: Any = ranged(Range(float, 0, 1, low_open=True))
    last_blocks_lr_scale: Any = ranged(Range(float, 0, 1000, low_open=True))
    batch_size: Any = ranged(Range(int, 1, 65536))
    max_epochs: Any = ranged(Range(int, 0, 100_000, why="0: the stage keeps the model it starts from (a control)"))
    loss_weights: LossWeights | None = MISSING
    gamma: Any = ranged(Range(float, 0, 10))
    warmup_steps: Any = ranged(Range(int, 0, 10_000_000))
    monitor: str | None = MISSING
    monitor_mode: str | None = MISSING


@dataclass
class BackboneConfig:
    """Which timm architecture (``conf/backbone/<name>.yaml``)."""

    name: str = MISSING
    timm_name: str = MISSING
    pretrained: bool = MISSING
    weights: str | None = MISSING
    gradcam_layer: str | None = MISSING


@dataclass
class PathsConfig:
    data_dir: str = MISSING
    output_dir: str = MISSING
    job_dir: str = MISSING                    # = bcc.core.layout.stage_dir


@dataclass
class ExternalConfig:
    """``experiment=external``: whose fold models score the external set (the evaluation's, never training's)."""

    source: str = MISSING
    stage: Any = ranged(Range(int, 0, 3))
    batch_size: Any = ranged(Range(int, 1, 65536))


@dataclass
class TrainConfig:
    """``conf/config.yaml``: a training job (one backbone x fold x stage)."""

    experiment_name: str = MISSING
    fold: Any = MISSING                       # 0..data.k-1 (training.config checks it against data.k)
    seed: Any = ranged(Range(int, 0, 2**32 - 1, why="numpy's seed range"))
    ckpt_path: str | None = MISSING
    skip_done: bool = MISSING
    log_test_images: bool = MISSING
    external: ExternalConfig | None = MISSING
    optimized_metric: str | None = MISSING
    paths: PathsConfig = MISSING
    data: Any = targeted(
        k=Range(int, 2, 100, why="k-fold cross-validation needs 2 folds or more"),
        split_seed=Range(int, 0, 2**32 - 1),
        image_size=Range(int, *IMAGE_SIZE, why="the network's input side in pixels"),
        eval_batch_size=Range(int, 1, 65536, nullable=True),
        val_fraction=Range(float, 0, 0.9, low_open=True, why="the validation slice selects the checkpoint; it "
                                                            "cannot be empty"),
        num_workers=Range(int, 0, 256),
        frozen_views=Range(int, 0, 64, why="0: no frozen activations; 1: view 0 only (no augmentation)"),
        frozen_max_gb=Range(float, 0, 100_000, low_open=True))
    backbone: BackboneConfig = MISSING
    model: Any = targeted(**{"net.dropout": Range(float, 0, 1, high_open=True),
                             "bn_recalibration_batches": Range(int, 0, 100_000)})
    loss: Any = targeted()
    optimizer: Any = targeted()
    callbacks: Any = targeted()
    stage: StageConfig = MISSING
    trainer: Any = targeted(check_val_every_n_epoch=Range(int, 1, 100_000), log_every_n_steps=Range(int, 1, 1_000_000),
                            gradient_clip_val=Range(float, 0, 1e6, low_open=True, nullable=True))
    logger: Any = targeted()


# ---- evaluation (conf/eval.yaml: the training tree and these) -----------------------------------------------
@dataclass
class EvalSettings:
    """``eval.*``: what the cross-fold report computes."""

    stage: Any = ranged(Range(int, 0, 3, why="the training stages are 0, 1, 2 and 3"))
    thresholds: Any = ranged(Range(float, 0, 1, words=("val",)))
    backbones: list[str] | None = MISSING
    k: Any = ranged(Range(int, 1, 100, nullable=True))
    allow_incomplete: bool = MISSING
    allow_mixed: bool = MISSING
    target_sensitivity: Any = ranged(Range(float, 0, 1, low_open=True))
    ece_bins: Any = ranged(Range(int, 1, 1000))
    linear_probe: bool = MISSING
    linear_probe_c: Any = ranged(Range(float, 0, 1e6, low_open=True))
    complexity: bool = MISSING
    bench_batch: Any = ranged(Range(int, 1, 4096))
    bench_repeats: Any = ranged(Range(int, 1, 1000))
    dataset: str | None = MISSING
    table4: Any = targeted(max_figures=Range(int, 0, 100), threshold=Range(float, 0, 1),
                           centre_sigma=Range(float, 0, 10, low_open=True), seed=Range(int, 0, 2**32 - 1),
                           road_images=Range(int, 0, 100_000), max_side=Range(int, 16, 100_000, nullable=True))
    sources: bool = MISSING
    source_probe: bool = MISSING
    shortcuts: bool = MISSING
    lesion_focus: bool = MISSING


@dataclass
class WandbSettings:
    enabled: bool = MISSING
    project: str = MISSING
    offline: bool = MISSING


@dataclass
class EvalConfig(TrainConfig):
    """``conf/eval.yaml``: the training tree (so ``experiment=<name>`` means the same), and the report's settings."""

    output_dir: str = MISSING
    report_dir: str | None = MISSING
    eval: EvalSettings = MISSING
    wandb: WandbSettings = MISSING


# ---- deployment (conf/predict.yaml, explain.yaml, export.yaml) ---------------------------------------------
@dataclass
class PredictConfig:
    checkpoint: str = MISSING
    input: str = MISSING
    output: str = MISSING
    threshold: Any = MISSING                  # checked with the other thresholds (bcc.deploy.thresholds)
    band: Any = MISSING
    pattern_threshold: Any = MISSING
    pattern_thresholds: Any = MISSING
    thresholds: str | None = MISSING
    explain: Any = ranged(Range(bool))
    explain_checkpoint: str | None = MISSING
    report: Any = ranged(Range(bool))
    batch_size: Any = ranged(Range(int, 1))
    threads: Any = ranged(Range(int, 1))
    max_megapixels: Any = ranged(Range(float, 0, low_open=True))
    overwrite: Any = ranged(Range(bool))
    progress: Any = ranged(Range(bool, nullable=True))


@dataclass
class ExplainConfig:
    checkpoint: str = MISSING
    input: str = MISSING
    output: str = MISSING
    save_raw: Any = ranged(Range(bool))
    batch_size: Any = ranged(Range(int, 1))
    max_megapixels: Any = ranged(Range(float, 0, low_open=True))
    overwrite: Any = ranged(Range(bool))
    device: str = MISSING


#: the largest batch a guarantee is computed for (``deploy.guarantee``: its search grows with the batch)
GUARANTEE_MAX_BATCH = 100_000


@dataclass
class ExportConfig:
    """``epsilon`` and ``delta`` are checked together with the batch (``deploy.guarantee.check_levels``)."""

    checkpoint: Any = MISSING                 # a path, a quoted glob or a list: the fold ensemble
    format: str = MISSING
    quantize: str | None = MISSING
    output: str | None = MISSING
    data_root: str | None = MISSING
    calibration: str | None = MISSING
    n_calibration: Any = ranged(Range(int, 1))
    check_data: str | None = MISSING
    check_fold: Any = ranged(Range(int, 0, nullable=True))
    max_accuracy_drop: Any = ranged(Range(float, 0, 1))
    force: Any = ranged(Range(bool))
    allow_outside: Any = ranged(Range(bool, nullable=True))
    guarantee_data: str | None = MISSING
    epsilon: Any = MISSING
    delta: Any = MISSING
    guarantee_batch: Any = ranged(Range(int, 1, GUARANTEE_MAX_BATCH, nullable=True,
                                        why="beyond it the population guarantee, null, is the same"))
    tolerance: Any = ranged(Range(float, 0, low_open=True))


# ---- reading the schemas -------------------------------------------------------------------------------------
def _schema_of(tp: Any) -> type | None:
    """The dataclass a field's type names (``Optional[X]`` too), or None."""
    for t in (tp, *typing.get_args(tp)):
        if dataclasses.is_dataclass(t) and isinstance(t, type):
            return t
    return None


def _fields(schema: type) -> dict[str, tuple[dataclasses.Field, Any]]:
    hints = typing.get_type_hints(schema)
    return {f.name: (f, hints[f.name]) for f in dataclasses.fields(schema)}


def ranges_of(schema: type, prefix: str = "") -> dict[str, Range]:
    """Every ranged key of `schema`, dotted from its root (``stage.lr``, ``data.image_size``)."""
    out: dict[str, Range] = {}
    for name, (f, tp) in _fields(schema).items():
        key = f"{prefix}{name}"
        if _RANGE in f.metadata:
            out[key] = f.metadata[_RANGE]
        out.update({f"{key}.{sub}": rng for sub, rng in f.metadata.get(_RANGES, {}).items()})
        if (inner := _schema_of(tp)) is not None:
            out.update(ranges_of(inner, f"{key}."))
    return out


def check_schema(cfg: DictConfig, schema: type, path: str = "") -> None:
    """Refuse (``UsageError``) a key of `cfg` that `schema` does not declare, at any depth of its typed nodes:
    Hydra refuses them on composition, except those added with ``+`` (``+stage.lrr=0.1``)."""
    fields = _fields(schema)
    unknown = sorted(str(k) for k in cfg if str(k) not in fields)
    if unknown:
        raise UsageError(f"unknown config key{'s' if len(unknown) > 1 else ''} "
                         f"{', '.join(f'{path}.{k}' if path else k for k in unknown)}; "
                         f"{path or 'the top level'} takes {', '.join(sorted(fields))}")
    for name, (_, tp) in fields.items():
        inner, node = _schema_of(tp), cfg.get(name) if name in cfg else None
        if inner is not None and isinstance(node, DictConfig):
            check_schema(node, inner, f"{path}.{name}" if path else name)


def _register() -> None:
    cs = ConfigStore.instance()
    cs.store(name="train_schema", node=TrainConfig)
    cs.store(group="stage", name="stage_schema", node=StageConfig)
    cs.store(group="backbone", name="backbone_schema", node=BackboneConfig)
    cs.store(group="paths", name="paths_schema", node=PathsConfig)
    cs.store(name="eval_schema", node=EvalConfig)
    cs.store(name="predict_schema", node=PredictConfig)
    cs.store(name="explain_schema", node=ExplainConfig)
    cs.store(name="export_schema", node=ExportConfig)


_register()
