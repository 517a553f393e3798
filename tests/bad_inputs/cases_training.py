"""Bad inputs of the training commands (see tests/bad_inputs/__init__.py): caught before any training."""
from __future__ import annotations

import shutil

import torch

from tests.bad_inputs.case import Case, Workspace
from tests.helpers.checkpoints import tampered_copy

TRAIN = "bcc.cli.train:main"


def smoke(*extra: str):
    """A smoke training command on the workspace's dataset copy, writing under the workspace."""
    def argv(ws: Workspace) -> list[str]:
        data = ws.dataset("data/synthetic-smoke").parent
        return ["experiment=smoke", f"paths.data_dir={data}", f"paths.output_dir={ws.root / 'out'}", "logger=csv",
                *extra]
    return argv


def _dataset(ws: Workspace) -> None:
    ws.dataset("data/synthetic-smoke")


def _finished_stage0(ws: Workspace, tamper: bool = False) -> None:
    """The smoke dataset and a finished stage 0 of fold 0 in the output folder (its best.ckpt tampered)."""
    _dataset(ws)
    job = ws.root / "out" / "mobilenet" / "fold0" / "stage0"
    shutil.copytree(ws.checkpoint().parent, job)
    if tamper:
        tampered_copy(job / "best.ckpt", job / "best.ckpt", ws.root / "code-ran")


def _tampered_file(ws: Workspace) -> None:
    _dataset(ws)
    tampered_copy(ws.checkpoint(), ws.root / "evil.ckpt", ws.root / "code-ran")


def _tampered_weights(ws: Workspace) -> None:
    _dataset(ws)
    torch.save({"conv_stem.weight": torch.zeros(1), "x": _Payload(ws.root / "code-ran")}, ws.root / "imagenet.pth")


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


CASES: list[Case] = [
    Case("train/unknown-key-added", TRAIN, smoke("+data.image_sz=64"), 2, r"unknown config key data\.image_sz",
         _dataset),
    Case("train/unknown-key", TRAIN, smoke("data.image_sz=64"), 2, r"data\.image_sz", _dataset),
    Case("train/csv-without-root", TRAIN, lambda ws: ["data=csv", f"paths.output_dir={ws.root / 'out'}", "logger=csv"], 2,
         r"data\.root is not set: point it at your dataset"),
    Case("train/unknown-stage-key", TRAIN, smoke("+stage.lrr=0.1"), 2, r"stage\.lrr", _dataset),
    Case("train/fold-out-of-range", TRAIN, smoke("fold=9"), 2, r"fold=9 is outside 0\.\.4", _dataset),
    Case("train/fold-range-descending", TRAIN, smoke("fold=4-0", "--multirun"), 2, r"fold=4-0: the range must go up",
         _dataset),
    Case("train/unknown-stage", TRAIN, smoke("stage=7"), 2, r"stage", _dataset),
    Case("train/unknown-backbone", TRAIN, smoke("backbone=resnet"), 2, r"backbone", _dataset),
    Case("train/ckpt-path-missing", TRAIN, smoke("stage=0", "ckpt_path=/nonexistent/last.ckpt"), 2,
         r"ckpt_path=/nonexistent/last\.ckpt: .*does not exist", _dataset),
    Case("train/resume-without-last", TRAIN, smoke("stage=0", "ckpt_path=last"), 2,
         r"ckpt_path=last: .*last\.ckpt does not exist", _dataset),
    Case("train/missing-predecessor", TRAIN, smoke("stage=3", "fold=2"), 2,
         r"stage 3 of fold 2 starts from .*stage2/best\.ckpt, which does not exist.*stage=2 fold=2", _dataset),
    Case("train/stage-handover-pickled-code", TRAIN, smoke("stage=1", "fold=0"), 2,
         r"stage0/best\.ckpt: refused to load .*pickled objects", lambda ws: _finished_stage0(ws, tamper=True)),
    Case("train/resume-file-pickled-code", TRAIN, lambda ws: smoke("stage=0", f"ckpt_path={ws.root / 'evil.ckpt'}")(ws),
         2, r"evil\.ckpt: refused to load", _tampered_file),
    Case("train/backbone-weights-pickled-code", TRAIN,
         lambda ws: smoke("stage=1", "fold=0", f"backbone.weights={ws.root / 'imagenet.pth'}")(ws), 2,
         r"backbone\.weights .*imagenet\.pth: refused to load", _tampered_weights),
    Case("train/backbone-weights-missing", TRAIN, smoke("stage=1", "fold=0", "backbone.weights=/nonexistent.pth"), 2,
         r"backbone\.weights.*/nonexistent\.pth does not exist", _dataset),
    Case("train/devices-without-ddp", TRAIN, smoke("trainer.devices=3"), 2, r"trainer\.devices=3 needs .*trainer=ddp",
         _dataset),
]
if not torch.cuda.is_available():  # the case exists on machines without a GPU
    CASES.append(Case("train/gpu-without-gpu", TRAIN, smoke("trainer=gpu"), 2, r"no CUDA GPU is visible", _dataset))
