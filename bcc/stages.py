"""The training stages (paper §2.3) and how one stage hands over to the next.

=======  ==================================================  ==============================================
stage    trains (conf/stage/<s>.yaml ``trainable``)            starts from
=======  ==================================================  ==============================================
0        whole network, from scratch (only without ImageNet)  random weights
1        the three heads; backbone frozen incl. BN statistics ImageNet weights, or stage 0's backbone
2        last three blocks (bcc.backbones) + heads, lower lr  ``fold<k>/stage1/best.ckpt``
3        pattern + negative-criterion heads, very low lr      ``fold<k>/stage2/best.ckpt``
=======  ==================================================  ==============================================

``StageCallback`` applies the freezing when fit starts: frozen parts get ``requires_grad=False`` and are
held in eval mode (``MultitaskNet.set_trainable``), so frozen BatchNorm layers keep their running
statistics and schedule-free's optimizer only sees the trainable parameters.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from bcc.backbones import weights_source


class MissingStageError(RuntimeError):
    """A stage's predecessor checkpoint is missing; the message names the command that makes it."""


class StageCallback(Callback):
    """Freeze everything except the stage's trainable parts (``bcc.network.PARTS``)."""

    def __init__(self, stage: int, trainable: Sequence[str]):
        self.stage, self.trainable = int(stage), list(trainable)

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit":
            pl_module.net.set_trainable(self.trainable)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        pl_module.net.train()  # re-applies the held eval modes after Lightning's mode handling


def stage_dir(output_dir: str | Path, backbone: str, fold: int, stage: int) -> Path:
    """``<output_dir>/<backbone>/fold<k>/stage<s>`` (DESIGN.md, run outputs)."""
    return Path(output_dir) / backbone / f"fold{int(fold)}" / f"stage{int(stage)}"


def needs_stage0(backbone: Mapping[str, Any]) -> bool:
    """No ImageNet weights asked for: stage 0 stands in for them."""
    return not backbone.get("pretrained") and not backbone.get("weights")


def sequence(stage: Any, backbone: Mapping[str, Any]) -> list[int]:
    """Stages a job runs, in order: ``all`` → [0?, 1, 2, 3]; a number → [that stage]."""
    if str(stage) == "all":
        return ([0] if needs_stage0(backbone) else []) + [1, 2, 3]
    s = int(stage)
    if s not in (0, 1, 2, 3):
        raise ValueError(f"stage={stage}: choose 0, 1, 2, 3 or all")
    return [s]


def start_description(stage: int, backbone: Mapping[str, Any]) -> str:
    """Where a stage starts, for metrics.json and reports."""
    if stage == 0:
        return "scratch"
    if stage == 1:
        return weights_source(bool(backbone.get("pretrained")), backbone.get("weights"))
    return f"stage{stage - 1}"


def start_checkpoint(output_dir: Path, backbone: Mapping[str, Any], fold: int, stage: int,
                     rerun_hint: str = "") -> tuple[Path | None, bool]:
    """The checkpoint a stage starts from and whether only its backbone is taken (stage 0 → 1).

    Raises MissingStageError for a missing predecessor (never a silent fresh start); stage 1's missing
    stage 0 is not an error here: the caller runs stage 0 first.
    """
    if stage == 0 or (stage == 1 and not needs_stage0(backbone)):
        return None, False
    prev = stage - 1
    path = stage_dir(output_dir, backbone["name"], fold, prev) / "best.ckpt"
    if not path.is_file() and stage >= 2:
        hint = f" {rerun_hint}" if rerun_hint else ""
        raise MissingStageError(
            f"stage {stage} of fold {fold} starts from {path}, which does not exist. Train stage {prev} "
            f"first: `python -m bcc.train stage={prev} fold={fold}{hint}` (or run the folds' stages in "
            f"order: `stage=1,2,3 fold=...  --multirun`, or `stage=all`)")
    return path, stage == 1


def load_start(net: torch.nn.Module, path: Path, backbone_only: bool) -> None:
    """Load a Lightning checkpoint's network weights (all of them, or only the backbone's) into `net`."""
    state = torch.load(path, map_location="cpu", weights_only=False)["state_dict"]
    prefix = "net.backbone." if backbone_only else "net."
    weights = {k[len("net."):]: v for k, v in state.items() if k.startswith(prefix)}
    if backbone_only:
        missing = net.backbone.load_state_dict({k[len("backbone."):]: v for k, v in weights.items()})
    else:
        missing = net.load_state_dict(weights)
    if missing.missing_keys or missing.unexpected_keys:  # pragma: no cover - strict load raises first
        raise RuntimeError(f"{path}: weights do not fit the network: {missing}")
