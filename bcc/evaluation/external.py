"""External validation (``experiment=external``): a trained experiment's fold models on another dataset.

    python -m bcc.data.isic ISIC_2019_Training_GroundTruth.csv ISIC_2019_Training_Input/ --out data/isic2019
    python -m bcc.evaluate experiment=external external.source=outputs/paper data.root=data/isic2019

Each fold's stage-s ``best.ckpt`` of the source experiment scores every image of the external set (none
of which it was trained on). Outputs follow the training layout, ``<output_dir>/<backbone>/fold<k>/
stage<s>/{predictions.csv, metrics.json, .hydra/config.yaml}``, so ``bcc.evaluate`` reads them as they
are (the same command then writes the report, the fold ensemble included). Codes the external set does
not annotate (ISIC 2019: all seven) stay blank and out of the metrics; the diagnosis head is scored
against the set's ``diagnosis``.

What the scoring takes from the source rather than from its own config: the backbone (the one it holds at
the stage; ``eval.backbones`` picks one of several), the number of folds (the source's ``data.k``: a 3-fold
source is complete with 3), each model's input size and preprocessing, and
what each fold trained on (``trained_on``, so the evaluation refuses to average folds trained on different
data). A source fold that is missing stops the job before anything is scored, with the training command
that makes it (the source jobs' own overrides). Each job records which source and which test set it
scored (``metrics.json`` ``external``); an output folder holding jobs of another source or test set (or a
training run's) is refused, so a stale fold is never averaged in.
"""
from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from bcc.core.config import Range, check_ranges
from bcc.core.errors import BadInput
from bcc.core.io import write_json
from bcc.core.layout import BEST, JOB_CONFIG, JOB_OVERRIDES, METRICS, PREDICTIONS, stage_dir
from bcc.core.patterns import OUTPUTS
from bcc.core.predictions import predictions_frame, write_predictions
from bcc.data.cache import decoded_images
from bcc.data.consensus import ensure_labels
from bcc.data.contract import dataset_hash
from bcc.data.table import aspects, read_table
from bcc.evaluation.runs import MissingRunsError, Run, describe_missing, discover, folds_expected
from bcc.models.checkpoint import load_network
from bcc.models.metrics import OutputMetrics, nested

#: the ``external.*`` options and what they take (checked before the source is read or anything written)
RANGES = {"external.stage": Range(int, 0, 3, why="the training stages are 0, 1, 2 and 3"),
          "external.batch_size": Range(int, 1, 4096)}


@dataclass
class Source:
    """The source experiment's finished fold models at one backbone and stage, and how they were trained."""

    path: Path
    backbone: str
    stage: int
    k: int
    runs: list[Run]
    overrides: list[str] = field(default_factory=list)  # what ``bcc.train`` was given (for commands)

    @property
    def checkpoints(self) -> dict[int, Path]:
        return {r.fold: r.path / BEST for r in self.runs}


def train_overrides(runs: Sequence[Run], source: Path) -> list[str]:
    """The overrides the source's jobs were trained with (``.hydra/overrides.yaml``), without fold, stage,
    backbone and ckpt_path, with ``paths.output_dir`` pointing at `source`: the base of a command that
    trains one more of its folds."""
    for r in runs:
        path = r.path / JOB_OVERRIDES
        if path.is_file():
            saved = OmegaConf.load(path)
            if OmegaConf.is_list(saved):
                drop = ("fold", "stage", "backbone", "ckpt_path", "paths.output_dir")
                kept = [str(o) for o in saved if str(o).split("=", 1)[0].lstrip("+~") not in drop
                        and not str(o).startswith("hydra")]
                return [*kept, f"paths.output_dir={source}"]
    experiment = next((r.metrics.get("experiment") for r in runs if r.metrics.get("experiment")), None)
    return [*([f"experiment={experiment}"] if experiment else []), f"paths.output_dir={source}"]


def source_backbone(ready: Sequence[Run], source: Path, stage: int, wanted: Sequence[str] | None) -> str:
    """The backbone to score: the one `ready` (the source's finished stage-`stage` models) holds, or the one
    of them ``eval.backbones`` names (a source of several backbones, e.g. a backbone sweep)."""
    held = sorted({r.backbone for r in ready})
    if not held:
        raise BadInput(
            f"external.source={source}: no <backbone>/fold<k>/stage{stage}/{BEST} there. Point it at a trained "
            f"experiment's output_dir (e.g. outputs/demo after `make demo`), or set external.stage")
    chosen = [b for b in held if b in wanted] if wanted else held
    if len(chosen) != 1:
        which = (f"eval.backbones=[{','.join(wanted)}] names none of" if wanted and not chosen
                 else "score one at a time: eval.backbones=[<one>] picks it from")
        raise BadInput(f"external.source={source}: {which} the backbones it holds at stage {stage} "
                       f"({', '.join(held)})")
    return chosen[0]


def read_source(cfg: DictConfig) -> Source:
    """``external.source``'s finished fold models (stage ``external.stage``, the backbone the source holds or
    ``eval.backbones`` picks) and its fold count; a missing fold is an error naming the training command
    that makes it (unless ``eval.allow_incomplete``), none at all one naming what to point at."""
    source, stage = Path(cfg.external.source), int(cfg.external.stage)
    every = discover(source)
    ready = [r for r in every if r.stage == stage and r.finished and (r.path / BEST).is_file()]
    backbone = source_backbone(ready, source, stage, cfg.eval.get("backbones"))
    runs = [r for r in ready if r.backbone == backbone]
    mine = [r for r in every if r.backbone == backbone]
    k = folds_expected(runs, cfg.eval.get("k"))
    overrides = train_overrides(runs, source)
    found = Source(source, backbone, stage, k, sorted(runs, key=lambda r: r.fold), overrides)
    lines = describe_missing([r for r in mine if r.fold < k], None, backbone, stage, k, source, overrides)
    if lines and not cfg.eval.get("allow_incomplete"):
        raise MissingRunsError(
            f"external.source={source}: {backbone} stage {stage} has {len(lines)} of its {k} folds missing "
            f"(data.k={k} in its jobs' config); nothing was scored. Train them first:\n  " + "\n  ".join(lines) +
            "\n(or score the folds there are with eval.allow_incomplete=true)")
    found.runs = [r for r in found.runs if r.fold < k]
    return found


def _record(source: Source, root: Path, test_hash: str | None = None) -> dict:
    return {"source": str(source.path.resolve()), "test_set": str(root.resolve()),
            **({"test_set_hash": test_hash} if test_hash else {})}


def check_output(out: Path, source: Source, record: dict) -> None:
    """Refuse an output folder holding jobs this run would not write over with its own: another source's
    or test set's (an earlier external run), or a training run's — they would be averaged in. `record`
    without ``test_set_hash``: checked on the paths alone (before the test set is read)."""
    if out.resolve() == source.path.resolve():
        raise BadInput(f"paths.output_dir={out} is external.source itself: scoring would write over its training "
                       f"runs; choose another paths.output_dir (e.g. outputs/external)")
    for r in discover(out):
        said = r.metrics.get("external")
        if not r.metrics and not (r.path / PREDICTIONS).is_file():
            continue  # an empty or unfinished folder holds nothing to average
        said = {k: v for k, v in said.items() if k in record} if isinstance(said, dict) else said
        ours = said == record and r.backbone == source.backbone and r.stage == source.stage
        if not ours or r.fold not in source.checkpoints:
            what = ("a job with no record of an external run (a training run's, or an older scoring's)" if not said else
                    f"scored from {said.get('source')} on {said.get('test_set')}" if said != record else
                    f"fold {r.fold}, which {source.path} does not have at stage {source.stage}")
            raise BadInput(
                f"paths.output_dir={out}: {r.path} is {what}; the evaluation would average it with this run's "
                f"folds. Choose a new paths.output_dir (e.g. {out}-{Path(record['test_set']).name}) or delete "
                f"the old results")


@torch.inference_mode()
def score(net: torch.nn.Module, images: np.ndarray, batch_size: int) -> np.ndarray:
    """(N, H, W, 3) uint8 → (N, 8) probabilities in OUTPUTS order."""
    probs = []
    for i in tqdm(range(0, len(images), batch_size), desc="external", leave=False, unit="batch"):
        x = torch.from_numpy(images[i:i + batch_size]).permute(0, 3, 1, 2).float().div_(255.0)
        probs.append(torch.sigmoid(net(x.contiguous(memory_format=torch.channels_last))).numpy())
    return np.concatenate(probs)


def job_config(cfg: DictConfig, source: Source, net, run: Run) -> DictConfig:
    """The config saved with each scored job: the command's, with the source job's backbone, the source's fold
    count and the model's input (what the evaluation reads back as the runs' backbone, data.k, image size and
    preprocessing: Table 5 measures that backbone, the report names its start)."""
    saved = copy.deepcopy(cfg)
    for key, value in (run.config.get("backbone") or {}).items():
        if key in saved.backbone:  # key by key: the node may be a typed (structured) config
            OmegaConf.update(saved, f"backbone.{key}", value)
    for key, value in (("data.k", source.k), ("data.image_size", int(net.image_size)),
                       ("data.resize", net.preprocess.resize), ("data.colour", net.preprocess.colour)):
        OmegaConf.update(saved, key, value, force_add=True)
    return saved


def evaluate_external(cfg: DictConfig) -> Source:
    """Score every source fold model on ``data.root`` into ``paths.output_dir``; returns the source read."""
    check_ranges(cfg, RANGES)
    root, out = Path(cfg.data.root), Path(cfg.paths.output_dir)
    source = read_source(cfg)
    check_output(out, source, _record(source, root))  # before the test set's labels are derived
    outside = bool(cfg.data.get("allow_outside", False))
    ensure_labels(root, allow_outside=outside)
    table = read_table(root, splits=False, allow_outside=outside)
    record = _record(source, root, dataset_hash(root, outside))
    check_output(out, source, record)
    y = table[list(OUTPUTS)].to_numpy(dtype=np.float32)
    for run in source.runs:
        ckpt = run.path / BEST
        net = load_network(ckpt)
        images = decoded_images(root, list(table["image"]), net.preprocess, allow_outside=outside,
                                aspects=aspects(table))
        p = np.where(net.trained, score(net, images, int(cfg.external.batch_size)), np.nan)  # untrained: no output
        metrics = OutputMetrics("test")
        metrics.use_trained(net.trained)
        metrics.update(torch.from_numpy(p), torch.from_numpy(y))
        job = stage_dir(out.resolve(), source.backbone, run.fold, source.stage)
        (job / JOB_CONFIG).parent.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(job_config(cfg, source, net, run), job / JOB_CONFIG)
        write_predictions(predictions_frame(table["image_id"], run.fold, y, p), job / PREDICTIONS)
        write_json({"experiment": cfg.experiment_name, "backbone": source.backbone, "fold": run.fold,
                    "stage": source.stage, "source_checkpoint": str(ckpt.resolve()), "image_size": net.image_size,
                    "trained_on": run.metrics.get("trained_on") or {}, "external": record,
                    # how the source job was trained (the report's setting line): its network, seed and machine
                    **{key: run.metrics[key] for key in ("timm_name", "seed", "machine") if key in run.metrics},
                    "n_images": {"test": len(table)}, "test": nested(metrics.compute(), "test")}, job / METRICS)
    return source


def auroc_words(ensemble: pd.DataFrame) -> str:
    """The external set's AUROC in words (fold models, then their ensemble), or why there is none: a set
    without BCC (or with BCC only) has no AUROC, which is said instead of printing nan."""
    last = ensemble.iloc[-1]
    if not np.isfinite(float(last["auroc"])):
        n, pos = int(last["n"]), int(last["positives"])
        which = "no BCC case" if pos == 0 else ("BCC cases only" if pos == n else "too few labelled cases")
        return (f"no BCC AUROC: the {n} labelled pictures hold {which} (an AUROC needs BCC and non-BCC "
                f"cases); Table 3's accuracy and specificity are what this set measures")
    folds = ensemble["auroc"].iloc[:-1]
    sd = folds.std(ddof=1) if len(folds) > 1 else 0.0
    return (f"BCC AUROC {folds.mean():.3f} ± {sd:.3f} over {len(folds)} fold models; fold ensemble "
            f"{float(last['auroc']):.4f}")
