"""Localisation metrics of Grad-CAM maps against masks, from Quantus 0.6.0 (Hedström et al. 2023).

- relevance mass accuracy (Arras et al. 2022): the share of the map's total mass inside the mask;
- relevance rank accuracy (Arras et al. 2022): of the |mask| highest-valued pixels, the share inside it;
- pointing game (Zhang et al. 2018): 1 when the map's maximum lies inside the mask.

Each is computed on the map restricted to a region (zero outside it): the whole image for the paper's
background, the lesion for "lesion minus mask". The maps are used as they are (Quantus' normalisation
and absolute value off: z is already in [0, 1]). A map that is zero all over the region has no mass,
ranks or maximum: NaN for all three (Quantus' pointing game would count it a hit).

The metrics' own ``evaluate_batch`` is called, not ``__call__``: with normalisation off, what
``__call__`` adds are input checks — one of them builds a Python set of every pixel value of the batch
(slow on a large image: docs/speed.md) and another refuses a batch whose maps are all zero, which an untrained or
1 x 1-grid model produces.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import quantus

METRICS = {"mass_accuracy": quantus.RelevanceMassAccuracy, "rank_accuracy": quantus.RelevanceRankAccuracy,
           "pointing_game": quantus.PointingGame}


def localisation(maps: Sequence[np.ndarray], masks: Sequence[np.ndarray], regions: Sequence[np.ndarray]
                 ) -> dict[str, np.ndarray]:
    """metric name → (K,) scores for K (map, mask, region) triples of one shape (H, W)."""
    if len(maps) == 0:
        return {name: np.zeros(0) for name in METRICS}
    a = np.stack([np.asarray(z, np.float32) * np.asarray(r, bool) for z, r in zip(maps, regions, strict=True)])[:, None]
    s = np.stack([np.asarray(m, bool) for m in masks])[:, None]
    empty = a.reshape(len(a), -1).max(axis=1) <= 0
    out = {}
    for name, metric in METRICS.items():
        m = metric(normalise=False, abs=False, disable_warnings=True, display_progressbar=False)
        with np.errstate(invalid="ignore", divide="ignore"):
            scores = np.asarray(m.evaluate_batch(a_batch=a, s_batch=s), dtype=np.float64)
        scores[empty] = np.nan
        out[name] = scores
    return out
