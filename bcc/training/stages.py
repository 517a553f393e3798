"""The training stages (paper §2.3) and how one stage hands over to the next.

=======  ==================================================  ==============================================
stage    trains (conf/stage/<s>.yaml ``trainable``)            starts from
=======  ==================================================  ==============================================
0        whole network, from scratch (only without ImageNet)  random weights
1        the three heads; backbone frozen incl. BN statistics ImageNet weights, or stage 0's backbone
2        last three blocks (bcc.models.backbones) + heads     ``fold<k>/stage1/best.ckpt``
3        pattern + negative-criterion heads, very low lr      ``fold<k>/stage2/best.ckpt``
=======  ==================================================  ==============================================

``StageFreezing`` applies the freezing when fit starts: frozen parts get ``requires_grad=False`` and are
held in eval mode (``MultitaskNet.set_trainable``), so frozen BatchNorm layers keep their running
statistics and schedule-free's optimizer only sees the trainable parameters. It is a plain ``Callback``,
not Lightning's ``BaseFinetuning``: a stage's trainable set never changes during fit, and
``BaseFinetuning`` re-applies the optimizer param groups it stored at the last epoch start when a run
resumes — schedule-free keeps its step count and weight sum in those groups, so a resumed run would
restart them an epoch back. The handover reads checkpoints with ``bcc.models.checkpoint.load_weights``
(``weights_only``: a checkpoint carrying pickled code is refused).
"""
from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import lightning as L
from lightning.pytorch.callbacks import Callback

from bcc.core import jobs
from bcc.core.errors import BadInput
from bcc.core.layout import BEST, METRICS, stage_dir
from bcc.models.backbones import weights_source
from bcc.models.network import MultitaskNet


class MissingStageError(BadInput):
    """A stage's predecessor checkpoint is missing; the message names the command that makes it."""


class StageFreezing(Callback):
    """Freeze everything except the stage's trainable parts (``bcc.models.network.PARTS``); `bn_statistics`:
    whether BatchNorm layers inside them update their statistics (``MultitaskNet.set_trainable``)."""

    def __init__(self, trainable: Sequence[str], bn_statistics: str = "train"):
        self.trainable, self.bn_statistics = list(trainable), str(bn_statistics)

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit":
            _net(pl_module).set_trainable(self.trainable, self.bn_statistics)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        _net(pl_module).train()  # re-applies the held eval modes after Lightning's mode handling


def _net(pl_module: L.LightningModule) -> MultitaskNet:
    return cast(MultitaskNet, pl_module.net)


def needs_stage0(backbone: Mapping[str, Any]) -> bool:
    """No ImageNet weights asked for: stage 0 stands in for them."""
    return not backbone.get("pretrained") and not backbone.get("weights")


def sequence(stage: Any, backbone: Mapping[str, Any]) -> list[int]:
    """Stages a job runs, in order: ``all`` → [0?, 1, 2, 3]; a number → [that stage]."""
    if str(stage) == "all":
        return ([0] if needs_stage0(backbone) else []) + [1, 2, 3]
    s = int(stage)
    if s not in (0, 1, 2, 3):
        raise BadInput(f"stage={stage}: choose 0, 1, 2, 3 or all")
    return [s]


def start_description(stage: int, backbone: Mapping[str, Any]) -> str:
    """Where a stage starts, for metrics.json and reports."""
    if stage == 0:
        return "scratch"
    if stage == 1:
        return weights_source(bool(backbone.get("pretrained")), backbone.get("weights"))
    return f"stage{stage - 1}"


def resume_command(stage: int, fold: int, rerun_hint: str = "") -> str:
    """The command that resumes an interrupted stage from its last.ckpt."""
    return f"python -m bcc.train stage={stage} fold={fold} ckpt_path=last" + (f" {rerun_hint}" if rerun_hint else "")


def start_checkpoint(output_dir: Path, backbone: Mapping[str, Any], fold: int, stage: int,
                     rerun_hint: str = "") -> tuple[Path | None, bool]:
    """The checkpoint a stage starts from and whether only its backbone is taken (stage 0 → 1).

    Raises MissingStageError for a missing or unfinished predecessor (never a silent fresh start, never
    the half-trained checkpoint of an interrupted one); stage 1's missing stage 0 is not an error here:
    the caller runs stage 0 first.
    """
    if stage == 0 or (stage == 1 and not needs_stage0(backbone)):
        return None, False
    prev = stage - 1
    prev_dir = stage_dir(output_dir, backbone["name"], fold, prev)
    hint = f" {rerun_hint}" if rerun_hint else ""
    if (interrupted := jobs.unfinished(prev_dir)) is not None:
        raise MissingStageError(
            f"stage {stage} of fold {fold} starts from stage {prev}, which is unfinished in {prev_dir} (no "
            f"{METRICS}; {jobs.describe(interrupted)}). Resume it: `{resume_command(prev, fold, rerun_hint)}`, "
            f"or train it again: `python -m bcc.train stage={prev} fold={fold}{hint}`")
    path = prev_dir / BEST
    if path.is_file() and (prev_dir / METRICS).is_file() and (
            why := jobs.stale(prev_dir, json.loads((prev_dir / METRICS).read_text()))):
        raise MissingStageError(f"stage {stage} of fold {fold} starts from stage {prev}, which is stale: {why}: "
                                f"`python -m bcc.train stage={prev} fold={fold}{hint}`")
    if not path.is_file() and stage >= 2:
        raise MissingStageError(
            f"stage {stage} of fold {fold} starts from {path}, which does not exist. Train stage {prev} "
            f"first: `python -m bcc.train stage={prev} fold={fold}{hint}` (or run the folds' stages in "
            f"order: `stage=1,2,3 fold=...  --multirun`, or `stage=all`)")
    return path, stage == 1
