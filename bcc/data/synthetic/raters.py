"""Who says what: four simulated raters with known sensitivity/specificity per code (exact-count errors)."""
from __future__ import annotations

import numpy as np

from bcc.data.synthetic.shapes import iround

RATER_NAMES: tuple[str, ...] = ("derm_1", "derm_2", "derm_3", "derm_4")
#: rater -> (sensitivity per code, specificity per code), codes in CODES order.
RATERS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "derm_1": ((0.92, 0.90, 0.88, 0.86, 0.87, 0.85, 0.93), (0.95, 0.94, 0.93, 0.94, 0.93, 0.95, 0.92)),
    "derm_2": ((0.90, 0.87, 0.91, 0.85, 0.86, 0.88, 0.90), (0.93, 0.95, 0.92, 0.95, 0.94, 0.93, 0.94)),
    "derm_3": ((0.88, 0.92, 0.86, 0.89, 0.85, 0.86, 0.89), (0.94, 0.92, 0.95, 0.92, 0.95, 0.94, 0.93)),
    "derm_4": ((0.75, 0.72, 0.74, 0.70, 0.73, 0.71, 0.75), (0.74, 0.75, 0.72, 0.73, 0.71, 0.74, 0.72)),
}
#: rater -> fraction of its cells left blank.
BLANK_RATE: dict[str, float] = {"derm_1": 0.0, "derm_2": 0.10, "derm_3": 0.0, "derm_4": 0.0}


def simulate_raters(truth: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(n_raters, n, 7) float array: 1/0 ratings, NaN = left blank. Exact-count errors, see module doc."""
    n, m = truth.shape
    out = np.full((len(RATER_NAMES), n, m), np.nan)
    for r, name in enumerate(RATER_NAMES):
        sens, spec = RATERS[name]
        rated = rng.random((n, m)) >= BLANK_RATE[name]
        for j in range(m):
            col = out[r, :, j]
            pos = np.flatnonzero(rated[:, j] & (truth[:, j] == 1))
            neg = np.flatnonzero(rated[:, j] & (truth[:, j] == 0))
            col[pos] = 0.0
            col[rng.choice(pos, iround(sens[j] * len(pos)), replace=False)] = 1.0
            col[neg] = 1.0
            col[rng.choice(neg, iround(spec[j] * len(neg)), replace=False)] = 0.0
    return out
