"""A triage threshold with a finite-sample sensitivity guarantee, and the simulation that checks it.

The claim: *with probability ≥ 1 − δ over the draw of the calibration set, the sensitivity of the rule
"p(BCC) ≥ t ⇒ keep on the worklist" is ≥ 1 − ε.* Only the calibration set's BCC cases matter (a miss is
a BCC scored below t); the non-BCC cases give the price: the share of all cases deprioritised.

How t is chosen. Sort the n calibration BCC scores s_(1) ≤ … ≤ s_(n) and set t = s_(k). For a new BCC
case drawn from the same distribution, its miss probability q = P(s < s_(k)) ≤ F(s_(k)), and F(s_(k)) is
the k-th order statistic of n uniforms: Beta(k, n − k + 1). So P(q > ε) ≤ P(Beta(k, n−k+1) > ε) =
P(Binomial(n, ε) ≤ k − 1) — which is exactly saying that the one-sided Clopper–Pearson upper bound on
the miss rate, from k − 1 misses in n, is ≤ ε at level 1 − δ. The largest such k is taken (the highest
threshold, the most cases deprioritised). No multiple-testing correction is needed: the bound grows with
t, so testing thresholds from the lowest up and stopping at the first failure is fixed-sequence testing
(Learn then Test, Angelopoulos et al. 2021), and the order-statistic argument gives the same k directly.
With too few BCC cases no k qualifies (e.g. ε = 0.05, δ = 0.1 needs n ≥ 45): refused, saying how many.

That is the *population* guarantee (``batch=None``): the long-run sensitivity. A finite batch of m new
BCC cases adds its own sampling noise — 388 calibration and 388 test BCC cases, ε = 0.05, δ = 0.1: the
population guarantee leaves the batch's sensitivity ≥ 0.95 in only 86 % of splits. ``batch=m`` covers
the batch instead: under exchangeability the number of the m test BCC cases below s_(k) follows the
beta-binomial law BetaBinom(m, k, n − k + 1) exactly, so k is the largest with
P(misses ≤ ⌊εm⌋) ≥ 1 − δ. As m grows it tends to the population k. :func:`simulate` checks either on
random calibration/test splits of out-of-fold predictions.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats

from bcc.core.errors import BadInput
from bcc.models.calibration import threshold_for_sensitivity


@dataclass(frozen=True)
class Guarantee:
    """A threshold and what it promises: P(sensitivity ≥ 1 − epsilon) ≥ 1 − delta over the calibration set."""

    threshold: float
    epsilon: float
    delta: float
    n_calibration: int            # all calibration cases
    n_bcc: int                    # of which BCC: what the bound is computed from
    k: int                        # t is the k-th lowest BCC score; k − 1 calibration BCC cases fall below it
    batch: int | None             # None: the population's sensitivity; m: the sensitivity on m new BCC cases
    miss_bound: float             # P(miss rate > epsilon) (population) or P(batch misses > ⌊εm⌋), ≤ delta
    deprioritised: float          # share of the calibration cases below t (the price, in-sample)

    def as_dict(self) -> dict:
        return asdict(self)

    def statement(self) -> str:
        who = ("the sensitivity on new cases" if self.batch is None
               else f"the sensitivity over a batch of {self.batch} new BCC cases")
        return (f"with probability ≥ {1 - self.delta:.0%} over the calibration set, {who} is ≥ "
                f"{1 - self.epsilon:.0%} at p(BCC) ≥ {self.threshold:.4f} (Clopper–Pearson / order statistic "
                f"{self.k} of {self.n_bcc} calibration BCC cases, {self.n_calibration} cases in all)")


def _bound(n: int, k: np.ndarray, epsilon: float, batch: int | None) -> np.ndarray:
    """P(the guarantee fails) when t is the k-th lowest of n BCC scores (module docstring)."""
    if batch is None:
        return stats.binom.cdf(k - 1, n, epsilon)
    return stats.betabinom.sf(math.floor(epsilon * batch), batch, k, n - k + 1)


def check_levels(epsilon: float, delta: float, batch: int | None = None) -> None:
    """ε and δ in (0, 1), a batch a whole number ≥ 1 (usage errors name the option)."""
    for name, v in (("epsilon", epsilon), ("delta", delta)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < 1:
            raise BadInput(f"{name}={v}: expected a number between 0 and 1 (exclusive)")
    if batch is not None and (isinstance(batch, bool) or not isinstance(batch, int) or batch < 1):
        raise BadInput(f"batch={batch}: expected a whole number ≥ 1 (or null for the population guarantee)")


def guaranteed_threshold(y: np.ndarray, p: np.ndarray, epsilon: float = 0.05, delta: float = 0.1,
                         batch: int | None = None, source: str = "the calibration set") -> Guarantee:
    """The highest threshold on `p` (p(BCC)) with the guarantee, from labels `y` (1 = BCC) of a calibration
    set no model being calibrated has trained on. Raises BadInput when there are too few BCC cases."""
    check_levels(epsilon, delta, batch)
    y = np.asarray(y).astype(bool)
    p = np.asarray(p, dtype=np.float64)
    pos = np.sort(p[y])
    n = len(pos)
    ks = np.arange(1, n + 1)
    ok = ks[_bound(n, ks, epsilon, batch) <= delta] if n else ks
    if not len(ok):
        need = next(m for m in range(max(n, 1), 100_000) if _bound(m, np.array([1]), epsilon, batch)[0] <= delta)
        raise BadInput(f"{source}: {n} BCC cases are too few for sensitivity ≥ {1 - epsilon:.0%} with probability "
                       f"≥ {1 - delta:.0%}; it takes at least {need} (label more BCC cases, or raise epsilon/delta)")
    k = int(ok.max())
    t = float(pos[k - 1])
    return Guarantee(threshold=t, epsilon=float(epsilon), delta=float(delta), n_calibration=len(p),
                     n_bcc=n, k=k, batch=batch, miss_bound=float(_bound(n, np.array([k]), epsilon, batch)[0]),
                     deprioritised=float((p < t).mean()))


def simulate(y: np.ndarray, p: np.ndarray, epsilon: float = 0.05, delta: float = 0.1, n_splits: int = 1000,
             calibration_share: float = 0.5, batch: bool = False, seed: int = 0) -> dict:
    """Random calibration/test splits of (out-of-fold) predictions, stratified by class: per split the
    guaranteed threshold from the calibration part (``batch=True``: the test part's BCC count as the batch)
    and the empirical point, both applied to the test part. Returns the share of splits where the test
    sensitivity is ≥ 1 − ε (the guarantee: ≥ 1 − δ), mean sensitivity and share deprioritised."""
    y = np.asarray(y).astype(bool)
    p = np.asarray(p, dtype=np.float64)
    rng = np.random.default_rng(seed)
    pos, neg = np.flatnonzero(y), np.flatnonzero(~y)
    n_pos, n_neg = round(calibration_share * len(pos)), round(calibration_share * len(neg))
    rows: dict[str, list[tuple[float, float, float]]] = {"guaranteed": [], "empirical": []}
    for _ in range(n_splits):
        a, b = rng.permutation(pos), rng.permutation(neg)
        cal = np.concatenate([a[:n_pos], b[:n_neg]])
        test = np.concatenate([a[n_pos:], b[n_neg:]])
        g = guaranteed_threshold(y[cal], p[cal], epsilon, delta, len(pos) - n_pos if batch else None)
        empirical = threshold_for_sensitivity(y[cal], p[cal], 1 - epsilon)  # the highest t, no guarantee
        for name, t in (("guaranteed", g.threshold), ("empirical", empirical)):
            kept = p[test] >= t
            sens = kept[y[test]].mean()
            rows[name].append((sens, 1 - kept.mean(), t))
    out: dict[str, Any] = {"epsilon": epsilon, "delta": delta, "n_splits": n_splits, "calibration_share": calibration_share,
           "batch": (len(pos) - n_pos) if batch else None, "n_bcc_calibration": n_pos,
           "n_calibration": n_pos + n_neg, "n_test": len(y) - n_pos - n_neg}
    for name, r in rows.items():
        a = np.asarray(r)
        out[name] = {"share_sensitivity_ok": float((a[:, 0] >= 1 - epsilon - 1e-12).mean()),
                     "mean_sensitivity": float(a[:, 0].mean()), "min_sensitivity": float(a[:, 0].min()),
                     "mean_deprioritised": float(a[:, 1].mean()), "mean_threshold": float(a[:, 2].mean())}
    return out
