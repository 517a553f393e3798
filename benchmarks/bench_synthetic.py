"""Benchmark: time the embedded synthetic dataset generation (1559 images at 256 px), without and with twins.

``python -m benchmarks.bench_synthetic --audit`` measures instead the figures `docs/synthetic.md` reports
on the full set: the colour-shortcut AUROCs (images, twins, off the lesion, isic against the centres),
mask coverage and stroke widths (``bcc.data.synthetic.audit``). Needs scikit-learn (the dev extra).
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from bcc.data.synthetic import generate
from bcc.data.synthetic.audit import audit, structure_figures


def run(n: int = 1559, size: int = 256, seed: int = 0) -> dict:
    """Generate ``n`` images at ``size`` px into a temp dir, without and with twins; print and return the figures."""
    res = {"name": "synthetic_generate", "n": n, "size": size, "cpus": os.cpu_count()}
    for twins in (False, True):
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            out = generate(Path(tmp) / "ds", n=n, size=size, seed=seed, progress=False, twins=twins)
            seconds = time.perf_counter() - t0
            nbytes = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
        key = "twins" if twins else "plain"
        res.update({f"{key}_seconds": round(seconds, 2), f"{key}_images_per_s": round(n / seconds, 1),
                    f"{key}_dataset_mb": round(nbytes / 1e6, 1)})
        print(f"synthetic{' + twins' if twins else ''}: {n} images at {size}px in {seconds:.1f} s = "
              f"{n / seconds:.1f} images/s ({res['cpus']} CPUs, {nbytes / 1e6:.1f} MB)")
    return res


def figures(n: int = 1559, size: int = 256, seed: int = 0) -> dict:
    """The audit of a full set with twins: shortcut AUROCs, mask coverage, stroke widths; printed and returned."""
    with tempfile.TemporaryDirectory() as tmp:
        out = generate(Path(tmp) / "ds", n=n, size=size, seed=seed, progress=False, twins=True)
        res = {**audit(out, seed), **structure_figures(out)}
    for k, v in res.items():
        print(f"{k:24s} {v:.3f}")
    return res


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--audit", action="store_true", help="measure the audit figures instead of the time")
    ap.add_argument("--n", type=int, default=1559)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    (figures if a.audit else run)(a.n, a.size, a.seed)
