"""bcc.deploy.guarantee: the guaranteed threshold against the Clopper–Pearson bound computed independently,
the refusal when there are too few BCC cases, and the simulation that checks the claim on random splits."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.proportion import proportion_confint

from bcc.core.errors import BadInput
from bcc.deploy.guarantee import guaranteed_threshold, percent, required_bcc, simulate
from bcc.models.calibration import threshold_for_sensitivity


def _scores(n_pos: int, n_neg: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.r_[np.ones(n_pos, int), np.zeros(n_neg, int)]
    return y, np.r_[rng.beta(5, 2, n_pos), rng.beta(2, 5, n_neg)]


@pytest.mark.parametrize("n, eps, delta", [(200, 0.05, 0.1), (120, 0.1, 0.05), (60, 0.05, 0.1)])
def test_threshold_is_the_highest_with_a_clopper_pearson_bound_within_epsilon(n, eps, delta):
    """At the chosen threshold the calibration set has k − 1 misses, and the one-sided (1 − δ) Clopper–Pearson
    upper bound on the miss rate (statsmodels' exact interval, two-sided at level 2δ) is ≤ ε; one more
    miss would put it above ε."""
    y, p = _scores(n, 300)
    g = guaranteed_threshold(y, p, eps, delta)
    misses = int((p[y == 1] < g.threshold).sum())
    assert misses == g.k - 1
    upper = proportion_confint(misses, n, alpha=2 * delta, method="beta")[1]
    assert upper <= eps < proportion_confint(misses + 1, n, alpha=2 * delta, method="beta")[1]
    assert g.miss_bound <= delta and g.n_bcc == n and g.n_calibration == n + 300
    assert g.deprioritised == pytest.approx((p < g.threshold).mean())
    assert f"is ≥ {1 - eps:.0%}" in g.statement()


def test_a_batch_guarantee_is_stricter_and_tends_to_the_population_one():
    y, p = _scores(400, 400)
    pop = guaranteed_threshold(y, p, 0.05, 0.1)
    small = guaranteed_threshold(y, p, 0.05, 0.1, batch=100)
    big = guaranteed_threshold(y, p, 0.05, 0.1, batch=100_000)
    assert small.k < pop.k and small.threshold <= pop.threshold
    assert abs(big.k - pop.k) <= 1
    # the batch bound is the beta-binomial law of the misses among `batch` exchangeable new BCC cases
    assert small.miss_bound == pytest.approx(stats.betabinom.sf(5, 100, small.k, 400 - small.k + 1))


def test_too_few_bcc_cases_are_refused_with_how_many_it_takes():
    y, p = _scores(30, 100)
    with pytest.raises(BadInput, match=r"30 BCC cases are too few .* at least 45"):
        guaranteed_threshold(y, p, 0.05, 0.1, source="guarantee_data=x")
    with pytest.raises(BadInput, match=r"epsilon=1.5"):
        guaranteed_threshold(y, p, 1.5, 0.1)


@pytest.mark.parametrize("eps, delta, batch", [(0.05, 0.1, None), (0.1, 0.05, None), (0.01, 0.01, None),
                                               (0.05, 0.1, 100), (0.02, 0.2, 1000), (0.3, 0.1, 7)])
def test_the_count_it_takes_is_the_closed_form_and_the_first_that_holds(eps, delta, batch):
    """required_bcc is the fewest n at which k = 1 keeps the guarantee: found by counting up with scipy's
    binomial (population) or beta-binomial (batch) law, it equals ⌈log δ / log(1 − ε)⌉ for the population."""
    def fails(n):
        return (stats.binom.cdf(0, n, eps) if batch is None
                else stats.betabinom.sf(int(np.floor(eps * batch)), batch, 1, n)) > delta
    n = 1
    while fails(n):
        n += 1
    assert required_bcc(eps, delta, batch) == n
    if batch is None:
        assert n == int(np.ceil(np.log(delta) / np.log(1 - eps)))
    y, p = _scores(n, 50)
    assert guaranteed_threshold(y, p, eps, delta, batch).k == 1
    with pytest.raises(BadInput, match=rf"{n - 1} BCC cases are too few .* at least {n}"):
        guaranteed_threshold(y[1:], p[1:], eps, delta, batch)


def test_a_tiny_epsilon_says_how_many_it_takes_and_levels_print_as_they_are():
    y, p = _scores(400, 400)
    with pytest.raises(BadInput, match=r"400 BCC cases are too few for sensitivity ≥ 99\.9999% with probability ≥ "
                                       r"90%; it takes at least 2302584"):
        guaranteed_threshold(y, p, 1e-6, 0.1)
    assert (percent(1 - 0.004), percent(1 - 0.001), percent(0.95)) == ("99.6%", "99.9%", "95%")
    g = guaranteed_threshold(*_scores(3000, 100), 0.01, 0.004)
    assert "with probability ≥ 99.6% over the calibration set, the sensitivity on new cases is ≥ 99%" in g.statement()
    with pytest.raises(BadInput, match=r"batch=1000000000: expected a whole number in \[1, 100000\]"):
        guaranteed_threshold(y, p, 0.05, 0.1, batch=1_000_000_000)


def test_simulation_holds_the_batch_guarantee_and_the_empirical_point_does_not():
    """On 1000 random calibration/test splits the batch guarantee keeps test sensitivity ≥ 1 − ε in at least
    1 − δ of them (minus Monte-Carlo slack); the empirical point — sensitivity exactly 1 − ε on the
    calibration part — falls short about half the time, and deprioritises more."""
    y, p = _scores(300, 600, seed=1)
    sim = simulate(y, p, 0.05, 0.1, n_splits=1000, batch=True, seed=0)
    assert sim["guaranteed"]["share_sensitivity_ok"] >= 0.9 - 0.02
    assert sim["empirical"]["share_sensitivity_ok"] < 0.75
    assert sim["guaranteed"]["mean_deprioritised"] < sim["empirical"]["mean_deprioritised"]
    assert sim["n_bcc_calibration"] == 150 and sim["batch"] == 150


def test_the_empirical_point_allows_floor_eps_n_misses():
    """The simulation's empirical point is threshold_for_sensitivity at 1 − ε: one miss of 20 is 5 %."""
    y = np.ones(20, int)
    p = np.arange(20) / 20.0
    assert threshold_for_sensitivity(y, p, 1 - 0.05) == p[1]
