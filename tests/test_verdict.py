"""The verdict statistics: scipy's tests give the same numbers, simulated normal data give the
promised error rates and power, and the power figures an inconclusive verdict reports hold."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from trainlab.verdict import (
    ALPHA,
    CONFIRMED,
    INCONCLUSIVE,
    REFUTED,
    decide,
    difference,
    holm,
    one_sample,
    t_quantile,
)

SCRIPT = Path(__file__).parents[1] / "scripts" / "verdict_power.py"


def load_script():
    spec = importlib.util.spec_from_file_location("verdict_power", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# 1000 trials a cell: a rate's standard error is at most 1.6 points, so each bound below sits
# at least 4 standard errors from the rate expected (2.5%, 67%, 76%, from the noncentral t).
TRIALS = 1000


@pytest.mark.parametrize(
    "seeds, effect, verdict, bound",
    [
        (3, 0.0, CONFIRMED, ("<=", 0.05)),  # no true effect: a false "confirmed" at most 5%
        (5, 0.0, CONFIRMED, ("<=", 0.05)),
        (3, 3.0, CONFIRMED, (">=", 0.60)),  # 3 seeds, a 3-SD effect: confirmed at least 60%
        (5, 2.0, CONFIRMED, (">=", 0.70)),  # 5 seeds, a 2-SD effect: confirmed at least 70%
    ],
)
def test_simulated_verdict_rates(seeds: int, effect: float, verdict: str, bound: tuple) -> None:
    """Normal data through evaluate_claim (scripts/verdict_power.py measures more trials)."""
    rng = np.random.default_rng(seeds * 10 + int(effect))
    rate = load_script().rates(seeds, effect, TRIALS, rng)[verdict]
    op, limit = bound
    assert (rate <= limit) if op == "<=" else (rate >= limit), f"{verdict} rate {rate:.3f}"


def test_welch_matches_scipy() -> None:
    a, b = [0.91, 0.87, 0.95, 0.90], [0.80, 0.86, 0.83]
    test = difference(a, b, 0.0, above=True)
    ref = stats.ttest_ind(a, b, equal_var=False, alternative="greater")
    assert test.method == "welch" and test.p_claim == pytest.approx(ref.pvalue)
    ci = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert (test.lo, test.hi) == pytest.approx((ci.low, ci.high))
    assert decide(test.p_claim, test.p_other) == (CONFIRMED if ci.low > 0 else INCONCLUSIVE)


def test_the_verdict_is_the_interval_against_the_boundary() -> None:
    """Confirmed exactly when the whole 95% interval is on the claimed side."""
    rng = np.random.default_rng(1)
    for _ in range(200):
        a, b = rng.normal(1.0, 1.0, 4), rng.normal(0.0, 1.0, 3)
        for bound, above in ((0.0, True), (0.5, False), (-1.0, True)):
            t = difference(a, b, bound, above)
            claimed = t.lo > bound if above else t.hi < bound
            other = t.hi < bound if above else t.lo > bound
            want = CONFIRMED if claimed else REFUTED if other else INCONCLUSIVE
            assert decide(t.p_claim, t.p_other) == want


def test_one_sample_t_matches_scipy() -> None:
    x = [0.12, 0.10, 0.15, 0.09]
    test = one_sample(x, 0.2, above=False)
    ref = stats.ttest_1samp(x, 0.2, alternative="less")
    assert test.method == "t" and test.p_claim == pytest.approx(ref.pvalue)
    ci = stats.ttest_1samp(x, 0.2).confidence_interval(0.95)
    assert (test.lo, test.hi) == pytest.approx((ci.low, ci.high))


def test_infinite_values_and_no_spread_go_to_ranks_and_signs() -> None:
    never = difference([100, 120, 110, 130], [math.inf] * 4, 0.0, above=False)
    assert never.method == "ranks" and never.p_claim == pytest.approx(1 / math.comb(8, 4))
    tied = difference([180, 180, 180], [190, 190, 190], 0.0, above=False)  # no spread at all
    assert tied.method == "ranks" and decide(tied.p_claim, tied.p_other) == INCONCLUSIVE
    signs = one_sample([100, 120, math.inf, 90, 80, 70, 60], 500, above=False)
    assert signs.method == "signs" and signs.p_claim == pytest.approx(stats.binom.sf(5, 7, 0.5))
    point = one_sample([0.097] * 3, 0.2, above=False)  # every seed the same value
    assert point.method == "point" and decide(point.p_claim, point.p_other) == CONFIRMED


def test_holm_matches_the_step_down_rule() -> None:
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5]) == [0.5]
    assert holm([0.001, 0.9]) == pytest.approx([0.002, 0.9])


def test_seeds_needed_give_the_promised_power() -> None:
    """At the reported seeds per group the observed effect is confirmed about 80% of the time."""
    a, b = [1.3, 0.2, 1.9], [0.1, -0.6, 0.8]  # effect about 0.8 SD: inconclusive with 3 seeds
    test = difference(a, b, 0.0, above=True)
    assert decide(test.p_claim, test.p_other) == INCONCLUSIVE
    mde, seeds = test.power()
    assert mde > test.estimate and 3 < seeds < 100
    sd = math.sqrt((np.var(a, ddof=1) + np.var(b, ddof=1)) / 2)
    rng = np.random.default_rng(2)
    hits = [
        decide(*(lambda t: (t.p_claim, t.p_other))(
            difference(rng.normal(test.estimate, sd, seeds), rng.normal(0, sd, seeds), 0.0, True)
        )) == CONFIRMED
        for _ in range(400)
    ]  # fmt: skip
    assert 0.72 <= np.mean(hits) <= 0.88  # 80% within about 4 standard errors (2 points)
    assert ALPHA == 0.05


def test_t_quantiles_are_scipys_bit_for_bit() -> None:
    """The table describe() uses instead of importing scipy, and the fallback beyond it."""
    for df in [*range(1, 41), 2.5, 117.3]:
        assert t_quantile(df) == float(stats.t.ppf(1 - ALPHA / 2, df)), df
