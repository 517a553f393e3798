"""Checkpoints the tests train or forge: a smoke checkpoint shared per session, and one carrying code."""
from __future__ import annotations

import functools
import os
from pathlib import Path

import torch


@functools.cache
def trained_checkpoint(data_dir: Path, root: Path) -> Path:
    """A smoke checkpoint (stage 0, fold 0, as written by ``bcc.train``, Hydra config beside it), trained
    once per session and shared by the predict, export and explain tests."""
    from bcc.training.protocol import run

    torch.set_num_threads(1)
    out = root / "smoke-stage0"
    run(["experiment=smoke", f"paths.data_dir={data_dir}", f"paths.output_dir={out}", "stage=0", "logger=csv",
         "fold=0"])
    path = out / "mobilenet" / "fold0" / "stage0" / "best.ckpt"
    assert path.is_file()
    return path


class Evil:
    """Unpickling this would run a shell command (touch `marker`): a tampered checkpoint's payload."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def tampered_copy(ckpt: Path, out: Path, marker: Path) -> Path:
    """`ckpt` with pickled code added: loading it unsafely would create `marker`."""
    raw = torch.load(ckpt, map_location="cpu", weights_only=True)
    raw["callbacks"] = Evil(marker)
    torch.save(raw, out)
    return out
