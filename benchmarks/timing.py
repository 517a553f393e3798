"""Side-by-side timing for the benchmarks: the machine is shared and noisy, so alternatives run in turn."""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def interleaved(fns: dict[str, Callable[[], object]], repeat: int, warmup: bool = True) -> dict[str, float]:
    """Median seconds per function, the functions run in turn `repeat` times (after one warm-up each)."""
    if warmup:
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeat):
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}
