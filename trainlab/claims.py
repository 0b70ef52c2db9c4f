"""The lecture's claims as checks on measured quantities, and the verdicts compare gives them.

An experiment states its claims in its config (`experiment.claims`, a list of dicts):

    - text: ReLU reaches the target train error in at least 2x fewer steps than tanh
      kind: compare              # group a's metric is lower/higher than group b's
      metric: steps_to_target
      a: {activation: relu}
      op: lower                  # lower | higher (a is lower/higher than b)
      b: {activation: tanh}
      factor: 2                  # optional: a < b / factor (lower), a > b * factor (higher)
      margin: 0                  # optional, additive: a < b / factor - margin, a > b * factor + margin
    - text: random search finds a configuration at least as good as the grid (within 0.01)
      kind: compare
      metric: best_val_acc
      a: {search: hparam_search}
      op: at_least               # at_least | at_most: a is not worse than b by more than margin
      b: {search: hparam_grid}
      margin: 0.01               # here a tolerance >= 0: a >= b * factor - margin (at_most: a <= b / factor + margin)
    - text: with batch norm, val accuracy stays above 0.8 across init scales
      kind: threshold            # the selected groups' metric is above/below a value
      metric: val_acc
      where: {norm: batch}
      op: above                  # above | below
      value: 0.8
    - text: zero init leaves every unit of a layer identical
      kind: all_jobs             # every job (seed) of the selected groups satisfies metric op value
      metric: metrics.unit_max_diff
      where: {init: zeros}
      op: "<"                    # < | <= | > | >=
      value: 1.0e-6

Selectors (`a`, `b`, `where`) map an override key (`activation`, `optimizer.lr`) or a
`choices` key of summary.json (`data`, `model`) to a value or a list of accepted values;
numbers compare numerically (`optimizer.lr: 0.01` matches `optimizer.lr=1e-2`). An optional
`require: all | any` (default all) says how the verdicts of several matched groups combine.

Metrics are summary.json keys or dotted paths (`metrics.dead_fraction_max`), plus the derived
`train_error` (1 - train_acc), `acc_gap` (train_acc - val_acc) and `diverged` (1.0 when the
job's status is "diverged", 0.0 when it completed; failed and killed jobs are never measured).
"lr 1e6 diverges" is then `kind: all_jobs, metric: diverged, where: {optimizer.lr: 1e6},
op: ">=", value: 1`: refuted by any seed that stays finite. For `*_to_target` metrics a
null value means "never reached" and counts as +infinity: worse than any number.

Verdicts rest on each group's mean and 95% Student-t interval over its seeds:
- confirmed: the intervals separate in the claimed direction (or the interval lies entirely
  on the claimed side of the threshold); for all_jobs, every job satisfies the check;
- refuted: they separate the other way (or the interval lies entirely on the wrong side); for
  all_jobs, some job violates it;
- inconclusive: anything else, and always when a group has fewer than 2 seeds or is missing.
`at_least` (non-inferiority, "a is at least as good as b, up to margin") is confirmed when a's
whole interval lies above b's whole interval lowered by the margin (a.lo > b.hi * factor -
margin), refuted when a's whole interval lies below it (a.hi < b.lo * factor - margin: a is
worse by more than the margin), inconclusive otherwise. Overlapping intervals are *not*
evidence that a is as good as b: with margin 0, at_least confirms exactly when higher does,
and a margin is the difference one is willing to call "as good", fixed before the run.
`at_most` is its mirror image for lower-is-better metrics: confirmed when a.hi < b.lo / factor +
margin, refuted when a.lo > b.hi / factor + margin.
A group where some seed never reached the target has an interval [low over those that did, +inf].
When a selector matches several groups (other overrides vary), each matching pair that shares
the other overrides (compare), or each group (threshold, all_jobs), gets its own verdict, and
with `require: all` the claim is confirmed if all are, refuted if any is, inconclusive
otherwise; with `require: any`, confirmed if any is, refuted if all are.
Each pair is judged at 95% on its own: with many pairs, one spurious verdict is more likely.

Across sweeps (`trainlab compare SWEEP_A SWEEP_B ...`, see compare.py), each sweep is a
*search* labelled by its experiment name, and the groups claims see are the searches: group
`search=<label>` holds, for each seed, the search's best completed job by the ranking metric (the
configuration that search found with that seed). Those claims live in
`experiment.cross_sweep_claims` of any of the sweeps' experiments, select with `{search: LABEL}`,
and may use any metric of the chosen jobs (e.g. test_acc: selected on validation, judged on test).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

CONFIRMED, REFUTED, INCONCLUSIVE = "confirmed", "refuted", "inconclusive"
KINDS = ("compare", "threshold", "all_jobs")
LOWER_OPS = {"lower", "below", "less", "fewer", "smaller", "<", "<="}
HIGHER_OPS = {"higher", "above", "greater", "more", "larger", ">", ">="}
TOLERANT_OPS = {"at_least": "higher", "at_most": "lower"}  # compare only: margin is a tolerance
JOB_OPS: dict[str, Callable[[float, float], bool]] = {
    "<": lambda x, y: x < y,
    "<=": lambda x, y: x <= y,
    ">": lambda x, y: x > y,
    ">=": lambda x, y: x >= y,
}
DERIVED: dict[str, Callable[[Mapping[str, Any]], float]] = {
    "train_error": lambda s: 1.0 - s["train_acc"],
    "acc_gap": lambda s: s["train_acc"] - s["val_acc"],  # overfitting: train minus val accuracy
    "diverged": lambda s: float(s["status"] == "diverged"),  # 1.0 or 0.0 per job
}
_MISSING = object()


# ---------------------------------------------------------------- statistics


def t_quantile(p: float, df: int) -> float:
    """Quantile of Student's t distribution with `df` (integer) degrees of freedom, p in (0.5, 1)."""
    if df < 1 or not 0.5 < p < 1:
        raise ValueError(f"t_quantile needs df >= 1 and 0.5 < p < 1, got df={df}, p={p}")
    mass = 2 * p - 1  # P(|T| <= t)
    lo, hi = 0.0, math.pi / 2  # bisection on theta = atan(t / sqrt(df))
    for _ in range(80):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _t_central_mass(mid, df) < mass else (lo, mid)
    return math.sqrt(df) * math.tan((lo + hi) / 2)


def _t_central_mass(theta: float, df: int) -> float:
    """P(|T| <= sqrt(df) tan(theta)) for integer df, in closed form (Abramowitz-Stegun 26.7.3-4)."""
    c2, s = math.cos(theta) ** 2, math.sin(theta)
    if df % 2 == 0:
        term = total = 1.0
        for k in range(1, df // 2):
            term *= c2 * (2 * k - 1) / (2 * k)
            total += term
        return s * total
    term = total = math.cos(theta) if df > 1 else 0.0
    for k in range(1, (df - 1) // 2):
        term *= c2 * (2 * k) / (2 * k + 1)
        total += term
    return 2 / math.pi * (theta + s * total)


@dataclass(frozen=True)
class Stat:
    """A metric over the seeds of one group. mean/std/interval are over the finite values."""

    n: int  # seeds with a value (finite or "never")
    mean: float = math.nan
    std: float = math.nan  # sample std (ddof=1)
    lo: float = math.nan  # 95% Student-t interval of the mean
    hi: float = math.nan
    never: int = 0  # values that are +inf: "never reached"
    missing: int = 0  # jobs without a value (absent, null, NaN)

    @property
    def finite(self) -> int:
        return self.n - self.never

    def bounds(self) -> tuple[float, float]:
        """The interval verdicts and ranking use: "never" counts as +inf."""
        if self.n == 0:
            return math.nan, math.nan
        if self.finite == 0:
            return math.inf, math.inf
        return self.lo, (math.inf if self.never else self.hi)


def describe(values: Iterable[float | None]) -> Stat:
    """Mean, std and 95% t-interval of the finite values; +inf counts as "never"."""
    vals = list(values)
    missing = sum(v is None or math.isnan(v) or v == -math.inf for v in vals)
    never = sum(v == math.inf for v in vals)
    finite = [float(v) for v in vals if v is not None and math.isfinite(v)]
    n = len(finite) + never
    if not finite:
        return Stat(n=n, never=never, missing=missing)
    # identical values have no spread: avoid the float round-off of a mean that is not exact
    mean = finite[0] if min(finite) == max(finite) else math.fsum(finite) / len(finite)
    if len(finite) == 1:  # no spread to estimate: the interval is unbounded
        return Stat(n, mean, math.nan, -math.inf, math.inf, never, missing)
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in finite) / (len(finite) - 1))
    half = t_quantile(0.975, len(finite) - 1) * std / math.sqrt(len(finite))
    return Stat(n, mean, std, mean - half, mean + half, never, missing)


def metric_value(summary: Mapping[str, Any], metric: str) -> float | None:
    """A summary's value of `metric` (key, dotted path or derived); None if it has none.

    A `*_to_target` key present with null means "never reached": +inf.
    """
    node: Any = summary
    for part in metric.split("."):
        node = node.get(part, _MISSING) if isinstance(node, Mapping) else _MISSING
    if node is _MISSING and metric in DERIVED:
        try:
            return float(DERIVED[metric](summary))
        except (KeyError, TypeError):
            return None
    if node is None and metric.endswith("_to_target"):
        return math.inf
    if isinstance(node, bool) or not isinstance(node, (int, float)):
        return None
    return float(node)


def lower_is_better(metric: str) -> bool:
    """Whether a smaller value of `metric` is the better one (for ranking)."""
    words = ("loss", "error", "_to_target", "time", "gap", "diff", "dead", "saturat", "diverged")
    return any(w in metric for w in words)


def fmt_num(x: float) -> str:
    """About three significant digits; whole numbers (steps, counts) as integers."""
    if math.isinf(x) or math.isnan(x):
        return str(x)
    if x != 0 and (abs(x) < 1e-3 or abs(x) >= 1e6):
        return f"{x:.2e}"
    if abs(x) >= 100 or x == int(x):
        return f"{x:.0f}"
    return f"{x:.2f}" if abs(x) >= 1 else f"{x:.3f}"


def fmt_stat(st: Stat, interval: bool = True) -> str:
    """'140 ± 12 [95% 110, 170]', with '1/3 never' when some seeds never reached the target."""
    if st.n == 0:
        return "–"
    if st.finite == 0:
        return f"never ({st.never}/{st.n})"
    num = _fmt_like(st.std, st.mean) if st.finite >= 2 else fmt_num
    text = num(st.mean)
    if st.finite >= 2:
        text += f" ± {num(st.std) if st.std else 0}"
        if interval:
            text += f" [95% {num(st.lo)}, {num(st.hi)}]"
    if st.never:
        text += f", {st.never}/{st.n} never"
    return text


def _fmt_like(std: float, mean: float) -> Callable[[float], str]:
    """Fixed decimals down to the std's second significant digit: '141.3 ± 9.7', '0.913 ± 0.015'."""
    if not (std > 0 and math.isfinite(std)) or not 1e-3 <= abs(mean) < 1e6:
        return fmt_num
    decimals = min(max(1 - math.floor(math.log10(std)), 0), 6)
    return lambda x: f"{x:.{decimals}f}"


def stat_numbers(st: Stat) -> dict[str, Any]:
    """A Stat as JSON-safe numbers (infinities as the strings 'inf'/'-inf', NaN as null);
    lo/hi: the t-interval over finite values; interval: what the verdict used (never = +inf)."""
    nums = {k: _json_num(getattr(st, k)) for k in ("n", "mean", "std", "lo", "hi", "never")}
    return nums | {"interval": [_json_num(x) for x in st.bounds()]}


def _json_num(x: float | int) -> float | int | str | None:
    if isinstance(x, float) and math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return None if isinstance(x, float) and math.isnan(x) else x


# ---------------------------------------------------------------- claims


class GroupLike(Protocol):
    label: str
    params: dict[str, str]  # grouping overrides
    choices: dict[str, str]  # summary.json choices shared by the group's jobs

    def stat(self, metric: str) -> Stat: ...

    def values(self, metric: str) -> list[float | None]: ...


@dataclass
class ClaimResult:
    text: str
    verdict: str
    detail: str  # one line: the numbers behind the verdict
    numbers: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "verdict": self.verdict,
            "detail": self.detail,
            "numbers": self.numbers,
        }


def check_claim(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The claim with defaults filled in; ValueError with a one-line message if malformed."""
    claim = {"factor": 1.0, "margin": 0.0, "require": "all", **dict(spec)}
    kind = claim.get("kind")
    if kind not in KINDS:
        raise ValueError(f"claim kind must be one of {', '.join(KINDS)}, got {kind!r}")
    need = {"compare": ("metric", "a", "b", "op"), "threshold": ("metric", "where", "op", "value")}
    for key in need.get(kind, ("metric", "where", "op", "value")):
        if key not in claim:
            raise ValueError(f"{kind} claim {claim.get('text', '')!r} needs '{key}'")
    for key in ("a", "b", "where"):
        if key in claim and not isinstance(claim[key], Mapping):
            raise ValueError(f"claim '{key}' must be a mapping of override key -> value")
    claim["tolerant"] = kind == "compare" and claim["op"] in TOLERANT_OPS
    claim["op"] = _check_op(kind, str(claim["op"]))
    if claim["require"] not in ("all", "any"):
        raise ValueError(f"claim require must be all or any, got {claim['require']!r}")
    if not float(claim["factor"]) > 0:
        raise ValueError(f"claim factor must be > 0, got {claim['factor']!r}")
    if claim["tolerant"] and not float(claim["margin"]) >= 0:
        raise ValueError(f"{spec['op']} claim margin is a tolerance: >= 0, got {claim['margin']!r}")
    float(claim.get("value", 0)), float(claim["margin"])  # numbers, or ValueError
    claim.setdefault("text", f"{kind} {claim['metric']}")
    return claim


def _check_op(kind: str, op: str) -> str:
    """all_jobs: one of < <= > >= (below/above accepted); else 'lower' or 'higher'
    (compare also takes at_least/at_most, which check_claim marks as tolerant)."""
    if kind == "all_jobs":
        op = {"below": "<", "lower": "<", "above": ">", "higher": ">"}.get(op, op)
        if op not in JOB_OPS:
            raise ValueError(f"all_jobs claim op must be one of {', '.join(JOB_OPS)}, got {op!r}")
        return op
    if kind == "compare" and op in TOLERANT_OPS:
        return TOLERANT_OPS[op]
    if op not in LOWER_OPS | HIGHER_OPS:
        also = ", at_least, at_most" if kind == "compare" else ""
        raise ValueError(
            f"{kind} claim op must be lower/below/< or higher/above/>{also}, got {op!r}"
        )
    return "lower" if op in LOWER_OPS else "higher"


def evaluate_claims(
    specs: Sequence[Mapping[str, Any]], groups: Sequence[GroupLike]
) -> list[ClaimResult]:
    return [evaluate_claim(spec, groups) for spec in specs or ()]


def evaluate_claim(spec: Mapping[str, Any], groups: Sequence[GroupLike]) -> ClaimResult:
    """One claim's verdict; a malformed claim is inconclusive, with the reason."""
    try:
        claim = check_claim(spec)
    except (ValueError, TypeError) as err:
        return ClaimResult(str(spec.get("text", spec)), INCONCLUSIVE, f"invalid claim: {err}")
    judge = {"compare": _eval_compare, "threshold": _eval_threshold, "all_jobs": _eval_all_jobs}
    parts = judge[claim["kind"]](claim, groups)
    if isinstance(parts, str):  # no groups to judge
        return ClaimResult(claim["text"], INCONCLUSIVE, parts)
    return _combine(claim, parts)


def matches(group: GroupLike, where: Mapping[str, Any]) -> bool:
    """Whether a group's overrides (or, for other keys, its choices) satisfy a selector."""
    for key, want in where.items():
        have = group.params.get(key, group.choices.get(key, _MISSING))
        wants = want if isinstance(want, (list, tuple)) else [want]
        if have is _MISSING or not any(_same(have, w) for w in wants):
            return False
    return True


def _same(have: Any, want: Any) -> bool:
    a, b = _canon(have), _canon(want)
    try:
        return math.isclose(float(a), float(b), rel_tol=1e-9)
    except ValueError:
        return a == b


def _canon(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "null" if value is None else str(value)


def _short(group: GroupLike, keys: Iterable[str]) -> str:
    """The part of a group's label that the selector names (`activation=relu`)."""
    parts = [f"{k}={group.params.get(k, group.choices.get(k))}" for k in keys]
    return ",".join(parts) or group.label


def _select(groups: Sequence[GroupLike], where: Mapping[str, Any]) -> list[GroupLike]:
    return [g for g in groups if matches(g, where)]


def _eval_compare(claim: dict, groups: Sequence[GroupLike]) -> list[tuple] | str:
    keys = set(claim["a"]) | set(claim["b"])
    side_a, side_b = _select(groups, claim["a"]), _select(groups, claim["b"])
    if not side_a or not side_b:
        empty = "a" if not side_a else "b"
        return f"no group matches {empty}={dict(claim[empty])}"

    def others(g: GroupLike) -> dict[str, str]:
        return {k: v for k, v in g.params.items() if k not in keys}

    pairs = [(a, b) for a in side_a for b in side_b if a is not b and others(a) == others(b)]
    if not pairs:
        return f"no pair of groups a={dict(claim['a'])}, b={dict(claim['b'])} shares the other overrides"
    return [_judge_pair(claim, a, b, others(a)) for a, b in pairs]


def _judge_pair(claim: dict, a: GroupLike, b: GroupLike, shared: dict) -> tuple:
    metric, lower = claim["metric"], claim["op"] == "lower"
    sa, sb = a.stat(metric), b.stat(metric)
    f, m = float(claim["factor"]), float(claim["margin"])
    if claim["tolerant"]:  # at_least / at_most: the margin is given to a, not demanded of it
        m = -m

    def target(x: float) -> float:  # the value a must beat: b / f - m (lower), b * f + m (higher)
        return x / f - m if lower else x * f + m

    (alo, ahi), (blo, bhi) = sa.bounds(), sb.bounds()
    tlo, thi = target(blo), target(bhi)
    if min(sa.n, sb.n) < 2:
        verdict, why = INCONCLUSIVE, f"too few seeds (n={sa.n} vs {sb.n})"
    elif (ahi < tlo) if lower else (alo > thi):
        verdict, why = CONFIRMED, ""
    elif (alo > thi) if lower else (ahi < tlo):
        verdict, why = REFUTED, ""
    else:
        verdict, why = INCONCLUSIVE, "intervals overlap"
    keys = list(claim["a"]) + [k for k in claim["b"] if k not in claim["a"]]
    text = f"{_short(a, keys)} {fmt_stat(sa)} vs {_short(b, keys)} {fmt_stat(sb)}"
    text += _relation(sa, sb, metric, lower, f)
    if claim["tolerant"]:
        b_side = f"b / {fmt_num(f)}" if lower else f"{fmt_num(f)} b"
        b_side = "b" if f == 1 else b_side
        text += (
            f" (claimed a {'<=' if lower else '>='} {b_side} {'+' if lower else '-'} {fmt_num(-m)})"
        )
    text = _prefix(shared) + text + (f"; {why}" if why else "")
    numbers = {
        "a": {"group": a.label, **stat_numbers(sa)},
        "b": {"group": b.label, **stat_numbers(sb)},
    }
    return verdict, text, numbers


def _relation(sa: Stat, sb: Stat, metric: str, lower: bool, factor: float) -> str:
    """': ratio 4.4' (b/a for lower, a/b for higher) or ': difference 0.12' (a - b)."""
    if sa.never or sb.never or not (sa.finite and sb.finite):
        return ""
    if factor != 1 or metric.endswith("_to_target"):
        num, den = (sb.mean, sa.mean) if lower else (sa.mean, sb.mean)
        return f": ratio {num / den:.2g}" if den else ""
    return f": difference {fmt_num(sa.mean - sb.mean)}"


def _prefix(shared: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(shared.items())) + ": " if shared else ""


def _eval_threshold(claim: dict, groups: Sequence[GroupLike]) -> list[tuple] | str:
    chosen = _select(groups, claim["where"])
    if not chosen:
        return f"no group matches where={dict(claim['where'])}"
    value, lower = float(claim["value"]), claim["op"] == "lower"
    out = []
    for g in chosen:
        st = g.stat(claim["metric"])
        lo, hi = st.bounds()
        if st.n < 2:
            verdict, why = INCONCLUSIVE, f"too few seeds (n={st.n})"
        elif (hi < value) if lower else (lo > value):
            verdict, why = CONFIRMED, ""
        elif (lo > value) if lower else (hi < value):
            verdict, why = REFUTED, ""
        else:
            verdict, why = INCONCLUSIVE, "interval contains the threshold"
        side = "below" if lower else "above"
        text = f"{g.label} {fmt_stat(st)}, claimed {side} {fmt_num(value)}" + (
            f"; {why}" if why else ""
        )
        out.append((verdict, text, {"group": g.label, **stat_numbers(st)}))
    return out


def _eval_all_jobs(claim: dict, groups: Sequence[GroupLike]) -> list[tuple] | str:
    chosen = _select(groups, claim["where"])
    if not chosen:
        return f"no group matches where={dict(claim['where'])}"
    value, op = float(claim["value"]), claim["op"]
    out = []
    for g in chosen:
        vals = g.values(claim["metric"])
        known = [v for v in vals if v is not None and not math.isnan(v)]
        bad = [v for v in known if not JOB_OPS[op](v, value)]
        worst = (max if op in ("<", "<=") else min)(known) if known else math.nan
        if len(known) < 2:
            verdict, why = INCONCLUSIVE, f"too few seeds (n={len(known)})"
        elif bad:
            verdict, why = REFUTED, ""
        elif len(known) < len(vals):
            verdict, why = INCONCLUSIVE, f"{len(vals) - len(known)} job(s) without a value"
        else:
            verdict, why = CONFIRMED, ""
        text = f"{g.label}: {len(known) - len(bad)}/{len(vals)} jobs {op} {fmt_num(value)}"
        text += f" (worst {fmt_num(worst)})" + (f"; {why}" if why else "")
        nums = {
            "group": g.label,
            "jobs": len(vals),
            "ok": len(known) - len(bad),
            "worst": _json_num(worst),
        }
        out.append((verdict, text, nums))
    return out


def _combine(claim: dict, parts: list[tuple]) -> ClaimResult:
    verdicts = [p[0] for p in parts]
    if claim["require"] == "all":
        ok, bad = all(v == CONFIRMED for v in verdicts), REFUTED in verdicts
    else:
        ok, bad = CONFIRMED in verdicts, all(v == REFUTED for v in verdicts)
    verdict = CONFIRMED if ok else REFUTED if bad else INCONCLUSIVE
    if len(parts) == 1:
        detail = parts[0][1]
    else:
        counts = ", ".join(
            f"{verdicts.count(v)} {v}" for v in (CONFIRMED, REFUTED, INCONCLUSIVE) if v in verdicts
        )
        detail = f"{counts} (require {claim['require']}): " + "; ".join(
            f"[{v}] {t}" for v, t, _ in parts
        )
    numbers = [{"verdict": v, **nums} for v, _, nums in parts]
    return ClaimResult(claim["text"], verdict, detail, numbers)
