"""How a verdict is decided: the statistics behind every claim, and nothing else.

A claim names a side of a boundary: "a - b is above the margin", "log a - log b is below
-log factor", "the mean is above the threshold". Each test below returns two one-sided
p-values: `p_claim` (evidence that the truth is on the claimed side) and `p_other` (evidence
that it is on the other side). A part of a claim is confirmed when p_claim < ALPHA / 2 and
refuted when p_other < ALPHA / 2: for the t tests this is exactly "the whole 95% interval lies
on the claimed (other) side of the boundary". Which test:

- compare, finite values with some spread: Welch's t on the difference of means;
- compare, any infinite value (never reached the target, a diverged run's loss) or no spread
  at all in either group: Mann-Whitney on the ranks of a against b shifted to the boundary
  (exact, ties included, when the groups are small);
- threshold, finite values with some spread: the one-sample t interval of the mean;
- threshold, some infinite values: the sign test (binomial) of the values against the
  threshold; every seed the same value: that value decides (no sampling spread to allow for).

`holm` corrects the p-values of several parts of one claim. `Test.mde` is the smallest true
distance from the boundary these seeds would detect with 80% power, and `Test.seeds` the
seeds per group at which the observed effect would reach it (inf: none would).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

# scipy is imported where a test runs (scipy.stats alone costs seconds): the ranking table of a
# sweep without claims needs only the t quantiles below.

CONFIRMED, REFUTED, INCONCLUSIVE = "confirmed", "refuted", "inconclusive"
ALPHA = 0.05  # two-sided: each side of the boundary is tested at ALPHA / 2
POWER = 0.8  # for the smallest detectable effect and the seeds needed
EXACT_LIMIT = 20_000  # rank tests enumerate every split of the seeds up to this many
MAX_SEEDS = 100_000
# t.ppf(1 - ALPHA / 2, df) for df = 1..30, as scipy.special.stdtrit gives them (exactly: the
# floats round-trip; tests/test_verdict.py checks): the intervals of 2-31 seeds need no scipy
_T_QUANTILES = tuple(map(float, """
12.706204736174694 4.302652729749462 3.1824463052837078 2.7764451051977934 2.5705818356363146
2.4469118511449786 2.364624251592784 2.306004135204166 2.262157162798205 2.228138851986274
2.200985160091639 2.1788128296672284 2.1603686564627913 2.144786687917804 2.131449545559776
2.1199052992212546 2.1098155778333156 2.1009220402410382 2.0930240544083087 2.085963447265864
2.0796138447276795 2.0738730679040254 2.0686576104190486 2.0638985616280245 2.0595385527532972
2.0555294386428735 2.0518305164802846 2.0484071417952454 2.045229642132703 2.0422724563012378
""".split()))  # fmt: skip


@dataclass(frozen=True)
class Stat:
    """A metric over the seeds of one group. mean/std/interval are over the finite values."""

    n: int  # seeds with a value (finite or infinite: "never" / a diverged run's worst case)
    mean: float = math.nan
    std: float = math.nan  # sample std (ddof=1)
    lo: float = math.nan  # 95% Student-t interval of the mean, clipped to the metric's range
    hi: float = math.nan
    never: int = 0  # infinite values: never reached, or the worst case of a diverged run
    missing: int = 0  # jobs without a value (absent, null, NaN)
    worst: float = math.inf  # the sign of the infinite values (+inf or -inf)

    @property
    def finite(self) -> int:
        return self.n - self.never

    def bounds(self) -> tuple[float, float]:
        """The interval the ranking uses: infinite values stretch it to their side."""
        if self.n == 0:
            return math.nan, math.nan
        if self.finite == 0:
            return self.worst, self.worst
        if not self.never:
            return self.lo, self.hi
        return (self.lo, math.inf) if self.worst > 0 else (-math.inf, self.hi)


def describe(
    values: Iterable[float | None], clip: tuple[float, float] = (-math.inf, math.inf)
) -> Stat:
    """Mean, std and 95% t-interval (clipped to `clip`) of the finite values; +-inf counted."""
    vals = list(values)
    missing = sum(v is None or math.isnan(v) for v in vals)
    infinite = [v for v in vals if v is not None and math.isinf(v)]
    finite = [float(v) for v in vals if v is not None and math.isfinite(v)]
    n, worst = len(finite) + len(infinite), (infinite[0] if infinite else math.inf)
    if not finite:
        return Stat(n=n, never=len(infinite), missing=missing, worst=worst)
    # identical values have no spread: avoid the float round-off of a mean that is not exact
    mean = finite[0] if min(finite) == max(finite) else math.fsum(finite) / len(finite)
    if len(finite) == 1:  # no spread to estimate: the interval is the metric's whole range
        return Stat(n, mean, math.nan, clip[0], clip[1], len(infinite), missing, worst)
    std = float(np.std(finite, ddof=1)) if min(finite) != max(finite) else 0.0
    half = t_quantile(len(finite) - 1) * std / math.sqrt(len(finite))
    lo, hi = max(mean - half, clip[0]), min(mean + half, clip[1])
    return Stat(n, mean, std, lo, hi, len(infinite), missing, worst)


def t_quantile(df: float) -> float:
    """The (1 - ALPHA / 2) quantile of Student's t with df degrees of freedom: scipy's
    t.ppf (whose ppf is special.stdtrit), from the table for integer df up to 30."""
    if df == int(df) and 1 <= df <= len(_T_QUANTILES):
        return _T_QUANTILES[int(df) - 1]
    from scipy import special

    return float(special.stdtrit(df, 1 - ALPHA / 2))


@dataclass(frozen=True)
class Test:
    """One part of a claim, tested against its boundary (see the module docstring)."""

    method: str  # welch | t | ranks | signs | point
    estimate: float  # difference, mean, or (ranks, signs) the share on the claimed side
    lo: float  # 95% interval of the estimate (t tests only)
    hi: float
    p_claim: float  # small: the truth is on the claimed side
    p_other: float  # small: the truth is on the other side
    # () -> (mde, seeds): computed on demand (a root search); see `power`
    _power: Callable[[], tuple[float, float]] = field(default=lambda: (math.nan, math.nan))

    def power(self) -> tuple[float, float]:
        """(smallest detectable effect, seeds per group to resolve the observed one).
        mde: t tests, the distance from the boundary; ranks and signs, the share on the claimed
        side minus 1/2 (nan: these seeds can never decide). seeds: inf when none would."""
        return self._power()


def decide(p_claim: float, p_other: float) -> str:
    if p_claim < ALPHA / 2:
        return CONFIRMED
    return REFUTED if p_other < ALPHA / 2 else INCONCLUSIVE


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (family-wise error at most the level used)."""
    order = sorted(range(len(pvalues)), key=lambda i: pvalues[i])
    adjusted, running = [0.0] * len(pvalues), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(pvalues) - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


def _sides(z: float, above: bool) -> tuple[float, float]:
    """(p_claim, p_other) from a one-sided p-value `z` of "the truth is above"."""
    return (z, 1 - z) if above else (1 - z, z)


# ---------------------------------------------------------------- two groups


def difference(a: Sequence[float], b: Sequence[float], boundary: float, above: bool) -> Test:
    """Is mean(a) - mean(b) above (or below) `boundary`? a, b: at least 2 values each."""
    x, y = np.asarray(a, float), np.asarray(b, float)
    finite = np.isfinite(x).all() and np.isfinite(y).all()
    if not finite or (np.ptp(x) == 0 and np.ptp(y) == 0):
        return ranks(x, y + boundary, above)
    va, vb = x.var(ddof=1) / len(x), y.var(ddof=1) / len(y)
    se = math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (len(x) - 1) + vb**2 / (len(y) - 1))  # Welch-Satterthwaite
    d = float(x.mean() - y.mean())
    half = t_quantile(df) * se
    p_claim, p_other = _sides(_t_tail((d - boundary) / se, df), above)
    var_sum, df_factor = x.var(ddof=1) + y.var(ddof=1), _welch_df_factor(x, y)

    def power() -> tuple[float, float]:
        return _mde_t(se, df), _seeds_t(abs(d - boundary), var_sum, df_factor)

    return Test("welch", d, d - half, d + half, p_claim, p_other, functools.cache(power))


def _t_tail(t: float, df: float) -> float:
    """P(T > t) for Student's t: scipy's t.sf, whose sf is special.stdtr(df, -t)."""
    from scipy import special

    return float(special.stdtr(df, -t))


def _welch_df_factor(x: np.ndarray, y: np.ndarray) -> float:
    """df / (n - 1) of Welch's test with n seeds in each group and these variances."""
    va, vb = x.var(ddof=1), y.var(ddof=1)
    return (va + vb) ** 2 / (va**2 + vb**2)


def ranks(x: np.ndarray, y: np.ndarray, above: bool) -> Test:
    """Mann-Whitney: is x stochastically above (below) y? Exact (ties too) for small groups."""
    from scipy import stats

    splits = math.comb(len(x) + len(y), len(x))
    method = (
        stats.PermutationMethod(n_resamples=EXACT_LIMIT) if splits <= EXACT_LIMIT else "asymptotic"
    )
    side = "greater" if above else "less"
    other = "less" if above else "greater"
    test = stats.mannwhitneyu(x, y, alternative=side, method=method)
    p_other = stats.mannwhitneyu(x, y, alternative=other, method=method).pvalue
    u = float(test.statistic) / (len(x) * len(y))  # P(x > y) + P(x = y) / 2
    share = u if above else 1 - u
    n = min(len(x), len(y))
    smallest_p = 1 / splits  # the best an exact test of these seeds can do

    def power() -> tuple[float, float]:
        mde = _z_sum() / math.sqrt(6 * n) if smallest_p < ALPHA / 2 else math.nan  # Noether
        return mde, max(_noether_seeds(share), _min_rank_seeds())

    p_claim = float(test.pvalue)
    return Test("ranks", share, math.nan, math.nan, p_claim, float(p_other), functools.cache(power))


def _min_rank_seeds() -> int:
    """The fewest seeds per group with which an exact rank test can reach ALPHA / 2."""
    return next(n for n in range(2, 50) if 1 / math.comb(2 * n, n) < ALPHA / 2)


# ---------------------------------------------------------------- one group


def one_sample(values: Sequence[float], threshold: float, above: bool) -> Test:
    """Is the mean of `values` above (or below) `threshold`? At least 2 values."""
    x = np.asarray(values, float)
    if len(set(x.tolist())) == 1:  # every seed the same value: no sampling spread
        v = float(x[0])
        p_claim, p_other = (0.0, 1.0) if (v > threshold) == above else (1.0, 0.0)
        p_claim, p_other = (1.0, 1.0) if v == threshold else (p_claim, p_other)
        return Test("point", v, v, v, p_claim, p_other)
    if not np.isfinite(x).all():
        return signs(x, threshold, above)
    mean, se, df = float(x.mean()), float(x.std(ddof=1)) / math.sqrt(len(x)), len(x) - 1
    half = t_quantile(df) * se
    p_claim, p_other = _sides(_t_tail((mean - threshold) / se, df), above)

    def power() -> tuple[float, float]:
        return _mde_t(se, df), _seeds_t(abs(mean - threshold), float(x.var(ddof=1)), 1.0)

    return Test("t", mean, mean - half, mean + half, p_claim, p_other, functools.cache(power))


def signs(x: np.ndarray, threshold: float, above: bool) -> Test:
    """The sign test: how many values lie on the claimed side of the threshold."""
    claimed = int(np.sum(x > threshold if above else x < threshold))
    other = int(np.sum(x < threshold if above else x > threshold))
    n = claimed + other
    if n == 0:
        return Test("signs", math.nan, math.nan, math.nan, 1.0, 1.0)
    from scipy import stats

    p_claim = float(stats.binomtest(claimed, n, 0.5, alternative="greater").pvalue)
    p_other = float(stats.binomtest(other, n, 0.5, alternative="greater").pvalue)

    def power() -> tuple[float, float]:
        mde = _z_sum() / (2 * math.sqrt(n)) if 0.5**n < ALPHA / 2 else math.nan
        return mde, max(_sign_seeds(claimed / n), math.ceil(math.log2(2 / ALPHA)))

    return Test("signs", claimed / n, math.nan, math.nan, p_claim, p_other, functools.cache(power))


# ---------------------------------------------------------------- power


def _power_t(nc: float, df: float) -> float:
    """P(one-sided t test at ALPHA / 2 rejects) with noncentrality nc: noncentral t.
    (scipy.special's nctdtr/stdtrit are stats.nct.cdf/stats.t.ppf without the per-call
    overhead of the distribution objects: root searches call this often.)"""
    from scipy import special

    return 1.0 - float(special.nctdtr(df, nc, special.stdtrit(df, 1 - ALPHA / 2)))


def _mde_t(se: float, df: float) -> float:
    """The true distance from the boundary a one-sided t test detects with POWER."""
    from scipy import optimize

    top = 40.0  # beyond it nctdtr loses precision; power there is ~1 for any df >= 1
    if not _power_t(top, df) >= POWER:
        return math.inf
    return optimize.brentq(lambda c: _power_t(c, df) - POWER, 0.0, top) * se


def _seeds_t(effect: float, var_sum: float, df_factor: float) -> float:
    """Seeds per group at which `effect` is detected with POWER, given the variances
    (var_sum: their sum; df = df_factor * (n - 1))."""
    if effect == 0:
        return math.inf

    def power(n: int) -> float:
        return _power_t(effect / math.sqrt(var_sum / n), df_factor * (n - 1))

    lo, hi = 1, 2
    while power(hi) < POWER:
        lo, hi = hi, hi * 2
        if hi > MAX_SEEDS:
            return math.inf
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if power(mid) < POWER else (lo, mid)
    return hi


def _z_sum() -> float:
    from scipy import special  # stats.norm.ppf is special.ndtri

    return float(special.ndtri(1 - ALPHA / 2) + special.ndtri(POWER))


def _noether_seeds(share: float) -> float:
    """Seeds per group for a rank test to detect P(claimed side) = share (Noether 1987)."""
    return math.ceil(_z_sum() ** 2 / (6 * (share - 0.5) ** 2)) if share > 0.5 else math.inf


def _sign_seeds(share: float) -> float:
    """Seeds for a sign test to detect a share of values on the claimed side."""
    return math.ceil((_z_sum() / (2 * (share - 0.5))) ** 2) if share > 0.5 else math.inf
