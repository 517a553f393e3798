"""Per-output decisions fitted on the validation slice only: an operating threshold, a temperature and a bias.

The pattern heads are trained with a focal loss whose alpha balances rare codes, so their probabilities
are neither calibrated nor meant to be cut at 0.5. For each output, on the validation predictions
(never a test fold):

- **threshold**: the one maximising Youden's J (sensitivity + specificity − 1), midway to the next lower
  score (``youden_threshold``; the candidates and their rates are scikit-learn's ``roc_curve``);
- **temperature** T **and bias** b: the probability is recalibrated as ``sigmoid(logit(p) / T + b)``; T and b
  minimise the negative log-likelihood on the validation slice against Platt's smoothed targets (Platt
  scaling on the logit; b = 0 is Guo et al. 2017's temperature scaling). The bias is there because training
  shifts the prior: the balanced sampler shows BCC half the time and the focal loss's alpha weighs the
  classes, so the logit is off by a constant that a temperature (which keeps p = 0.5 where it is) cannot
  remove (measured: docs/speed.md). Monotone, so it changes calibration, never the ranking or the decisions
  at the matching threshold. Why not netcal: netcal 1.4 imports pyro-ppl (and
  requires gpytorch and tensorboard) for its scalers; a two-parameter NLL fit is scipy's L-BFGS-B.

Training writes the result as ``calibration.json`` beside ``best.ckpt``; evaluation reads it. The other
operating point, the highest threshold reaching a target sensitivity (``threshold_for_sensitivity``: the
evaluation's triage point and the deployment's empirical point), is read off the same ROC curve.
"""
from __future__ import annotations

import warnings
from collections.abc import Mapping

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.special import expit, logit
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import roc_curve

from bcc.core.patterns import OUTPUTS

EPS = 1e-6
T_RANGE = (0.05, 20.0)
BIAS_RANGE = (-10.0, 10.0)


def youden_threshold(y, p) -> float:
    """Threshold maximising sensitivity + specificity − 1 (0.5 when one class is absent); ties → the middle."""
    y = np.asarray(y).astype(bool)
    if y.all() or (~y).all():
        return 0.5
    fpr, tpr, cands = (a[:0:-1] for a in roc_curve(y, np.asarray(p, float), drop_intermediate=False))
    j = tpr - fpr  # per distinct score, ascending (roc_curve's leading +inf dropped)
    best = np.flatnonzero(j >= j.max() - 1e-12)
    i = best[len(best) // 2]
    # midway to the next lower score keeps the decision of the validation set but generalises better
    lower = cands[i - 1] if i > 0 else 0.0
    return float((cands[i] + lower) / 2)


def threshold_for_sensitivity(y, p, target: float = 0.95) -> float:
    """The highest threshold t with sensitivity(p ≥ t) ≥ target, 0 < target ≤ 1 (0.0 without positives)."""
    y = np.asarray(y).astype(bool)
    if not y.any():
        return 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)  # no negatives: the fpr is undefined, unused
        _, tpr, cands = roc_curve(y, np.asarray(p, float), drop_intermediate=False)
    return float(cands[np.argmax(tpr >= target - 1e-9)])


def scale(p, temperature: float, bias: float = 0.0) -> np.ndarray:
    """Probabilities recalibrated with `temperature` and `bias`: sigmoid(logit(p) / T + b)."""
    return expit(logit(np.clip(np.asarray(p, float), EPS, 1 - EPS)) / float(temperature) + float(bias))


def fit_scaling(y, p) -> tuple[float, float]:
    """The temperature and bias minimising the binary negative log-likelihood of `p` against Platt's targets
    for 0/1 labels `y` ((1, 0): no change, when one class is absent).

    Platt's targets, (N₊ + 1)/(N₊ + 2) for a positive and 1/(N₋ + 2) for a negative (as scikit-learn's sigmoid
    calibration uses), keep a small slice that the scores separate from driving the temperature to its bound
    (probabilities of 0 or 1 on unseen pictures); on hundreds of pictures they agree with hard 0/1 targets."""
    y, z = np.asarray(y, float), logit(np.clip(np.asarray(p, float), EPS, 1 - EPS))
    if len(y) == 0 or y.min() == y.max():
        return 1.0, 0.0
    positives, negatives = y.sum(), len(y) - y.sum()
    target = np.where(y == 1, (positives + 1) / (positives + 2), 1 / (negatives + 2))

    def nll(w: np.ndarray) -> float:
        q = np.clip(expit(z / np.exp(w[0]) + w[1]), EPS, 1 - EPS)
        return float(-np.mean(target * np.log(q) + (1 - target) * np.log1p(-q)))

    res = minimize(nll, np.zeros(2), method="L-BFGS-B", bounds=[tuple(np.log(T_RANGE)), BIAS_RANGE])
    return float(np.exp(res.x[0])), float(res.x[1])


def fit_calibration(val: pd.DataFrame) -> dict[str, dict]:
    """Per output: threshold, temperature, bias and what they were fitted on, from a validation prediction table."""
    out = {}
    for o in OUTPUTS:
        seen = (val[f"y_{o}"].notna() & val[f"p_{o}"].notna()).to_numpy()  # p blank: the output was not trained
        y, p = val.loc[seen, f"y_{o}"].to_numpy(float), val.loc[seen, f"p_{o}"].to_numpy(float)
        both = len(y) > 0 and 0 < y.sum() < len(y)
        temperature, bias = fit_scaling(y, p)
        out[o] = {"threshold": youden_threshold(y, p) if both else 0.5, "temperature": temperature, "bias": bias,
                  "n": len(y), "positives": int(y.sum()),
                  "fitted": bool(both)}  # False: one class only on validation → the defaults 0.5, 1 and 0
    return out


def calibrated(df: pd.DataFrame, calibration: Mapping[str, Mapping]) -> pd.DataFrame:
    """A prediction table with every ``p_<output>`` recalibrated by its temperature and bias (a
    ``calibration.json`` written before the bias existed: temperature only)."""
    df = df.copy()
    for o in OUTPUTS:
        df[f"p_{o}"] = scale(df[f"p_{o}"], calibration[o]["temperature"], calibration[o].get("bias", 0.0))
    return df
