"""Bad inputs of the training commands (see tests/bad_inputs/__init__.py): caught before any training."""
from __future__ import annotations

from tests.bad_inputs.case import Case, Workspace

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


CASES: list[Case] = [
    Case("train/unknown-key-added", TRAIN, smoke("+data.image_sz=64"), 2, r"unknown config key data\.image_sz",
         _dataset),
    Case("train/unknown-key", TRAIN, smoke("data.image_sz=64"), 2, r"data\.image_sz", _dataset),
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
]
