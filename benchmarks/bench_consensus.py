"""Dawid–Skene EM speed: 1559×4×7 (the paper's size) and 10⁶×4×7, against crowd-kit when installed."""
from __future__ import annotations

import time

import numpy as np

from bcc.data.consensus import dawid_skene
from tests.test_consensus import simulate


def _time(fn, repeat=3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def _crowdkit_seconds(ratings: np.ndarray) -> float | None:
    """crowd-kit's DawidSkene, one code at a time (it is multiclass, per (task, worker, label) row)."""
    try:
        import pandas as pd
        from crowdkit.aggregation import DawidSkene
    except ImportError:
        return None
    n, r, c = ratings.shape
    frames = []
    for code in range(c):
        task, worker = np.meshgrid(np.arange(n), np.arange(r), indexing="ij")
        ok = ~np.isnan(ratings[:, :, code])
        frames.append(pd.DataFrame({"task": task[ok], "worker": worker[ok],
                                    "label": ratings[:, :, code][ok].astype(int)}))
    t = time.perf_counter()
    for df in frames:
        DawidSkene(n_iter=200, tol=1e-6).fit_predict_proba(df)
    return time.perf_counter() - t


def run() -> dict:
    out = {}
    for n in (1559, 1_000_000):
        _, ratings, _, _ = simulate(n=n, seed=0)
        seconds = _time(lambda r=ratings: dawid_skene(r), repeat=3 if n < 10_000 else 1)
        out[n] = seconds
        print(f"bcc EM   {n:>9,d}×4×7: {seconds:8.3f} s")
    for n in (1559, 100_000):
        _, ratings, _, _ = simulate(n=n, seed=0)
        ck = _crowdkit_seconds(ratings)
        if ck is None:
            print("crowd-kit not installed (pip install '.[bench]'): reference comparison skipped")
            break
        ours = _time(lambda r=ratings: dawid_skene(r), repeat=1)
        print(f"crowd-kit {n:>8,d}×4×7: {ck:8.3f} s  → bcc is {ck / ours:.1f}× faster (same run)")
    return out
