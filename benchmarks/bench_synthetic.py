"""Benchmark: time the embedded synthetic dataset generation (1559 images at 256 px)."""
from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from bcc.data.synthetic import generate


def run(n: int = 1559, size: int = 256, seed: int = 0) -> dict:
    """Generate ``n`` images at ``size`` px into a temp dir; print and return the figures."""
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        out = generate(Path(tmp) / "ds", n=n, size=size, seed=seed, progress=False)
        seconds = time.perf_counter() - t0
        nbytes = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    res = {
        "name": "synthetic_generate",
        "n": n,
        "size": size,
        "cpus": os.cpu_count(),
        "seconds": round(seconds, 2),
        "images_per_s": round(n / seconds, 1),
        "dataset_mb": round(nbytes / 1e6, 1),
    }
    print(f"synthetic: {n} images at {size}px in {seconds:.1f} s = {n / seconds:.1f} images/s "
          f"({res['cpus']} CPUs, {res['dataset_mb']} MB)")
    return res


if __name__ == "__main__":
    run()
