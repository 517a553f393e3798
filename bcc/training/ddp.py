"""Multi-process training: how many processes a trainer config asks for, and starting them with torchrun.

Lightning would otherwise re-run the whole command line in each child (a whole sweep under
``--multirun``, or Hydra's saved flat config, which cannot compose the next stage of ``stage=all``), so
``bcc.train`` runs one job as ``torchrun --standalone --nproc_per_node=n -m bcc.train <overrides>``.
"""
from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence

import torch
from omegaconf import DictConfig

from bcc.core.log import get_logger

log = get_logger(__name__)


def processes(trainer: DictConfig) -> int:
    """How many processes a DDP trainer config asks for (1 for single-device strategies)."""
    if not str(trainer.get("strategy", "auto")).startswith("ddp"):
        return 1
    devices = trainer.get("devices", 1)
    if isinstance(devices, int) and devices > 0:
        return devices
    if not isinstance(devices, str) and hasattr(devices, "__len__"):  # a list of device ids
        return len(devices)
    return torch.cuda.device_count() if trainer.get("accelerator") in ("gpu", "cuda") else os.cpu_count() or 1


def barrier() -> None:
    """Wait for every DDP process (a no-op in a single process). A chained job (stage 1 training a missing
    stage 0 first, ``stage=all``) calls it after each stage: only rank 0 writes a stage's ``metrics.json`` and
    releases its lock, after the others have finished testing, and a rank checking the next stage's
    predecessor before that would find it "unfinished" and leave the others waiting on a dead peer."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()


def launched_externally() -> bool:
    """torchrun or SLURM (one task per device) already started every DDP process."""
    return "LOCAL_RANK" in os.environ or int(os.environ.get("SLURM_NTASKS", "1")) > 1


def launch(overrides: Sequence[str], n: int) -> None:
    """Run this one job in `n` processes (``python -m bcc.train <overrides>`` under torchrun)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}",
           "-m", "bcc.train", *[o for o in overrides if not o.startswith("hydra.")]]
    log.info(f"[bcc] DDP with {n} processes: {' '.join(cmd[1:])}")
    proc = subprocess.run(cmd, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"DDP job failed (exit {proc.returncode}): {' '.join(cmd)}")
