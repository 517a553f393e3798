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
With too few BCC cases no k qualifies: refused, saying how many it takes (:func:`required_bcc`). Even k = 1
fails while (1 − ε)^n > δ, so the population guarantee needs n ≥ ⌈log δ / log(1 − ε)⌉ BCC cases (ε = 0.05,
δ = 0.1: 45; ε = 10⁻⁶: 2 302 584) — a closed form, where a search would stop somewhere.

That is the *population* guarantee (``batch=None``): the long-run sensitivity. A finite batch of m new
BCC cases adds its own sampling noise: the population guarantee leaves a batch's sensitivity ≥ 1 − ε in
fewer than 1 − δ of the splits (experiments/ensemble/report.md). ``batch=m`` covers the batch instead:
under exchangeability the number of the m test BCC cases below s_(k) follows the beta-binomial law
BetaBinom(m, k, n − k + 1) exactly, so k is the largest with P(misses ≤ ⌊εm⌋) ≥ 1 − δ. As m grows it
tends to the population k (at m = 100 000 they differ by at most one order statistic), and its cost grows
with m, hence the bound :data:`MAX_BATCH`. :func:`simulate` checks either on random stratified
calibration/test splits of out-of-fold predictions (scikit-learn's ``StratifiedShuffleSplit``).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats
from sklearn.model_selection import StratifiedShuffleSplit

from bcc.core.classification import binary_metrics
from bcc.core.errors import BadInput
from bcc.core.settings import GUARANTEE_MAX_BATCH
from bcc.models.calibration import threshold_for_sensitivity

#: the largest batch a guarantee covers: beyond it the batch and the population guarantees agree, and the
#: beta-binomial law's cost grows with the batch
MAX_BATCH = GUARANTEE_MAX_BATCH  # core.settings: the export command's range reads it too


def percent(x: float) -> str:
    """`x` as a percentage with the digits it needs, never rounded up to 100 % (0.996 → "99.6%")."""
    return f"{100 * x:.10g}%"


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
        return (f"with probability ≥ {percent(1 - self.delta)} over the calibration set, {who} is ≥ "
                f"{percent(1 - self.epsilon)} at p(BCC) ≥ {self.threshold:.4f} (Clopper–Pearson / order statistic "
                f"{self.k} of {self.n_bcc} calibration BCC cases, {self.n_calibration} cases in all)")


def _bound(n: int, k: np.ndarray, epsilon: float, batch: int | None) -> np.ndarray:
    """P(the guarantee fails) when t is the k-th lowest of n BCC scores (module docstring)."""
    if batch is None:
        return stats.binom.cdf(k - 1, n, epsilon)
    return stats.betabinom.sf(math.floor(epsilon * batch), batch, k, n - k + 1)


def check_levels(epsilon: float, delta: float, batch: int | None = None) -> None:
    """ε and δ in (0, 1), a batch a whole number in [1, MAX_BATCH] (usage errors name the option)."""
    for name, v in (("epsilon", epsilon), ("delta", delta)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < 1:
            raise BadInput(f"{name}={v}: expected a number between 0 and 1 (exclusive)")
    if batch is not None and (isinstance(batch, bool) or not isinstance(batch, int) or not 1 <= batch <= MAX_BATCH):
        raise BadInput(f"batch={batch}: expected a whole number in [1, {MAX_BATCH}] (or null for the population "
                       f"guarantee, which a batch that large equals)")


def _fails_at_one(n: int, epsilon: float, delta: float, batch: int | None) -> bool:
    """Whether even the lowest of n calibration BCC scores (k = 1) misses the guarantee."""
    return bool(_bound(n, np.array([1]), epsilon, batch)[0] > delta)


def required_bcc(epsilon: float, delta: float, batch: int | None = None) -> int:
    """The fewest calibration BCC cases with which a threshold carries the guarantee (k = 1 qualifies):
    ⌈log δ / log(1 − ε)⌉ for the population, from (1 − ε)^n ≤ δ; for a batch, where k = 1's beta-binomial
    miss probability (falling as n grows) reaches δ, by bisection."""
    check_levels(epsilon, delta, batch)
    if batch is None:
        n = max(1, math.ceil(math.log(delta) / math.log1p(-epsilon)))
        while _fails_at_one(n, epsilon, delta, None):  # the closed form's rounding, guarded both ways
            n += 1
        while n > 1 and not _fails_at_one(n - 1, epsilon, delta, None):
            n -= 1
        return n
    low, high = 0, 1
    while _fails_at_one(high, epsilon, delta, batch):
        low, high = high, high * 2
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (mid, high) if _fails_at_one(mid, epsilon, delta, batch) else (low, mid)
    return high


def check_enough(n_bcc: int, epsilon: float, delta: float, batch: int | None = None,
                 source: str = "the calibration set") -> None:
    """Refuse a calibration set with fewer BCC cases than :func:`required_bcc`, saying how many it takes."""
    need = required_bcc(epsilon, delta, batch)
    if n_bcc < need:
        raise BadInput(f"{source}: {n_bcc} BCC cases are too few for sensitivity ≥ {percent(1 - epsilon)} with "
                       f"probability ≥ {percent(1 - delta)}"
                       + (f" over a batch of {batch}" if batch is not None else "")
                       + f"; it takes at least {need} (label more BCC cases, or raise epsilon/delta)")


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
    check_enough(n, epsilon, delta, batch, source)
    ok = ks[_bound(n, ks, epsilon, batch) <= delta]
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
    splits = StratifiedShuffleSplit(n_splits, train_size=calibration_share, random_state=seed)
    rows: dict[str, list[tuple[float, float, float]]] = {"guaranteed": [], "empirical": []}
    for cal, test in splits.split(p, y):  # stratified: every split has the same BCC count in each part
        m = int(y[test].sum())
        g = guaranteed_threshold(y[cal], p[cal], epsilon, delta, m if batch else None)
        empirical = threshold_for_sensitivity(y[cal], p[cal], 1 - epsilon)  # the highest t, no guarantee
        for name, t in (("guaranteed", g.threshold), ("empirical", empirical)):
            kept = p[test] >= t
            rows[name].append((binary_metrics(y[test], kept)["recall"], 1 - kept.mean(), t))
    out: dict[str, Any] = {"epsilon": epsilon, "delta": delta, "n_splits": n_splits, "calibration_share": calibration_share,
           "batch": m if batch else None, "n_bcc_calibration": int(y[cal].sum()),
           "n_calibration": len(cal), "n_test": len(test)}
    for name, r in rows.items():
        a = np.asarray(r)
        out[name] = {"share_sensitivity_ok": float((a[:, 0] >= 1 - epsilon - 1e-12).mean()),
                     "mean_sensitivity": float(a[:, 0].mean()), "min_sensitivity": float(a[:, 0].min()),
                     "mean_deprioritised": float(a[:, 1].mean()), "mean_threshold": float(a[:, 2].mean())}
    return out
