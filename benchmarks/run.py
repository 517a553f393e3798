"""`make bench`: run every benchmarks/bench_*.py `run()` (or those named on the command line) and print figures.

Targets are ratios measured side by side in one run, because this machine is shared and noisy.
"""
from __future__ import annotations

import importlib
import os
import sys
import time
from pathlib import Path


def main(names: list[str]) -> None:
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    here = Path(__file__).parent
    found = sorted(p.stem.removeprefix("bench_") for p in here.glob("bench_*.py"))
    unknown = [n for n in names if n not in found]
    if unknown:
        raise SystemExit(f"unknown benchmark(s) {unknown}; available: {found}")
    for name in names or found:
        print(f"\n=== bench {name} ===", flush=True)
        start = time.perf_counter()
        importlib.import_module(f"benchmarks.bench_{name}").run()
        print(f"--- {name} done in {time.perf_counter() - start:.1f} s", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
