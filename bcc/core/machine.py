"""What machine a result came from: training from scratch is bit-identical on one machine and chaotic
across CPUs (a different CPU gives different float rounding), so every run records where it ran."""
from __future__ import annotations

import os
import platform
from functools import cache
from pathlib import Path

import torch


@cache
def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux; ``platform.processor()`` elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def machine() -> dict:
    """CPU, cores, the GPU if one is used, and the torch version: the facts a result depends on."""
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"cpu": cpu_name(), "cores": os.cpu_count(), "gpu": gpu, "torch": torch.__version__}


def describe(m: dict) -> str:
    """One line, e.g. 'Intel(R) Xeon(R) Processor, 2 cores, torch 2.14.1'."""
    parts = [f"{m.get('cpu')}, {m.get('cores')} cores"] + ([f"GPU {m['gpu']}"] if m.get("gpu") else [])
    return ", ".join([*parts, f"torch {m.get('torch')}"])
