"""The lecture's claims as checks on measured quantities, and the verdicts compare gives them.

An experiment states its claims in its config (`experiment.claims`, a list of dicts); any
sweep can be judged later with `trainlab compare SWEEP --claims FILE.yaml` (a list of claims):

    - text: ReLU reaches the target train error in at least 2x fewer steps than tanh
      kind: compare              # group a's metric is lower/higher than group b's
      metric: steps_to_target
      a: {activation: relu}
      op: lower                  # lower | higher (a is lower/higher than b)
      b: {activation: tanh}
      factor: 2                  # optional, a ratio: a < b / factor (lower), a > b * factor (higher)
      margin: 0                  # optional, additive: a < b - margin (lower), a > b + margin (higher)
      scale: log                 # optional: log (the default with a factor) or linear
    - text: random search finds a configuration at least as good as the grid (within 0.01)
      kind: compare
      metric: best_val_acc
      a: {search: hparam_search}
      op: at_least               # at_least | at_most: a is not worse than b by more than margin
      b: {search: hparam_grid}
      margin: 0.01               # a tolerance >= 0: a >= b - margin (at_most: a <= b + margin)
    - text: with batch norm, val accuracy stays above 0.8 across init scales
      kind: threshold            # the selected groups' mean is above/below a value
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
Metrics, and how never-reached targets and diverged jobs are scored: scores.py.

Verdicts (the statistics: verdict.py; in words: README, "How a verdict is decided"): compare
claims on the interval of the difference a - b (log a - log b with a factor) against the
boundary, threshold claims on the interval of the mean, all_jobs on every job. When a selector
matches several groups, each pair sharing the other overrides (compare), or each group, is a
part with its own verdict; `require: all` is confirmed if all parts are, refuted if any is;
`require: any` confirmed if any is, refuted if all are (Holm-corrected where one part decides).
Cross-sweep claims (`experiment.cross_sweep_claims`, compare.py) see one group per sweep,
`{search: LABEL}`, holding each seed's best completed job.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from trainlab.fmt import fmt_num, fmt_stat, infinite_word, json_num, stat_numbers
from trainlab.scores import DERIVED, lower_is_better, metric_range, metric_value
from trainlab.verdict import (
    CONFIRMED,
    INCONCLUSIVE,
    REFUTED,
    Stat,
    Test,
    decide,
    describe,
    difference,
    holm,
    one_sample,
)

__all__ = ["CONFIRMED", "DERIVED", "INCONCLUSIVE", "REFUTED", "Stat", "describe", "fmt_num",
           "fmt_stat", "infinite_word", "lower_is_better", "metric_value"]  # fmt: skip
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
_MISSING = object()


# ---------------------------------------------------------------- claims


class GroupLike(Protocol):
    label: str
    params: dict[str, str]  # grouping overrides
    choices: dict[str, str]  # summary.json choices shared by the group's jobs

    def stat(self, metric: str) -> Stat: ...

    def values(self, metric: str) -> list[float | None]: ...  # scores.job_value per job


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


@dataclass
class Part:
    """One pair (compare) or group (threshold, all_jobs) of a claim."""

    text: str
    numbers: dict[str, Any]
    test: Test | None = None  # None: decided without statistics (all_jobs, too few seeds)
    verdict: str = INCONCLUSIVE
    why: str = ""  # why inconclusive without a test


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
    claim["scale"] = claim.get("scale", "log" if float(claim["factor"]) != 1 else "linear")
    if claim["scale"] not in ("linear", "log") or (
        float(claim["factor"]) != 1 and claim["scale"] != "log"
    ):
        raise ValueError(
            f"claim scale must be linear or log (log with a factor), got {claim['scale']!r}"
        )
    if claim["scale"] == "log" and float(claim["margin"]) != 0:
        raise ValueError("a log-scale (ratio) claim takes a factor, not a margin: margin must be 0")
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


def _known(group: GroupLike, metric: str) -> list[float]:
    return [v for v in group.values(metric) if v is not None and not math.isnan(v)]


def _stat(group: GroupLike, metric: str) -> Stat:
    return describe(group.values(metric), metric_range(metric))


def _diverged(group: GroupLike) -> str:
    count = getattr(group, "count", None)
    k = count("diverged") if callable(count) else 0
    return f" ({k} diverged, scored as the worst case)" if k else ""


def _eval_compare(claim: dict, groups: Sequence[GroupLike]) -> list[Part] | str:
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


def _boundary(claim: dict) -> tuple[float, bool, str]:
    """(boundary of the difference, whether the claim is 'above' it, the claim in words)."""
    above, f, m = claim["op"] == "higher", float(claim["factor"]), float(claim["margin"])
    m = -m if claim["tolerant"] else m  # at_least / at_most: the margin is given to a
    if claim["scale"] == "log":
        bound = math.log(f) if above else -math.log(f)
        return bound, above, f"a/b {'>' if above else '<'} {fmt_num(math.exp(bound))}"
    bound = (m if above else -m) + 0.0  # no "-0"
    return bound, above, f"a - b {'>' if above else '<'} {fmt_num(bound)}"


def _logs(values: list[float]) -> list[float] | None:
    """Natural logs (0 -> -inf); None when a value is negative."""
    if any(v < 0 for v in values):
        return None
    return [math.log(v) if v > 0 else -math.inf for v in values]


def _judge_pair(claim: dict, a: GroupLike, b: GroupLike, shared: dict) -> Part:
    metric = claim["metric"]
    sa, sb = _stat(a, metric), _stat(b, metric)
    keys = list(claim["a"]) + [k for k in claim["b"] if k not in claim["a"]]
    word = infinite_word(metric)
    text = f"{_prefix(shared)}{_short(a, keys)} {fmt_stat(sa, word=word)}{_diverged(a)} vs "
    text += f"{_short(b, keys)} {fmt_stat(sb, word=word)}{_diverged(b)}"
    numbers = {
        "a": {"group": a.label, **stat_numbers(sa)},
        "b": {"group": b.label, **stat_numbers(sb)},
    }
    xa, xb = _known(a, metric), _known(b, metric)
    if min(len(xa), len(xb)) < 2:
        return Part(text, numbers, why=f"too few seeds (n={len(xa)} vs {len(xb)})")
    bound, above, claimed = _boundary(claim)
    if claim["scale"] == "log":
        xa, xb = _logs(xa), _logs(xb)
        if xa is None or xb is None:
            return Part(text, numbers, why="a ratio (log scale) needs values >= 0")
    test = difference(xa, xb, bound, above)
    return Part(f"{text}: {_describe_test(test, claim['scale'] == 'log')} (claimed {claimed})",
                numbers, test)  # fmt: skip


def _describe_test(test: Test, log: bool) -> str:
    if test.method == "ranks":
        return f"by ranks (Mann-Whitney), P(a on the claimed side of b) = {test.estimate:.2f}"
    num = math.exp if log else float
    name = "ratio a/b" if log else "difference a - b"
    return f"{name} {fmt_num(num(test.estimate))} [95% {fmt_num(num(test.lo))}, {fmt_num(num(test.hi))}]"


def _prefix(shared: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(shared.items())) + ": " if shared else ""


def _eval_threshold(claim: dict, groups: Sequence[GroupLike]) -> list[Part] | str:
    chosen = _select(groups, claim["where"])
    if not chosen:
        return f"no group matches where={dict(claim['where'])}"
    value, above, metric = float(claim["value"]), claim["op"] == "higher", claim["metric"]
    parts = []
    for g in chosen:
        st, known = _stat(g, metric), _known(g, metric)
        text = f"{g.label} {fmt_stat(st, word=infinite_word(metric))}{_diverged(g)}, claimed "
        text += f"{'above' if above else 'below'} {fmt_num(value)}"
        numbers = {"group": g.label, **stat_numbers(st)}
        if len(known) < 2:
            parts.append(Part(text, numbers, why=f"too few seeds (n={len(known)})"))
            continue
        test = one_sample(known, value, above)
        how = {"signs": f": by signs, {test.estimate:.0%} of seeds on the claimed side",
               "point": f": every seed gave {fmt_num(test.estimate)}"}  # fmt: skip
        parts.append(Part(text + how.get(test.method, ""), numbers, test))
    return parts


def _eval_all_jobs(claim: dict, groups: Sequence[GroupLike]) -> list[Part] | str:
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
        part = Part(f"{g.label}: {len(known) - len(bad)}/{len(vals)} jobs {op} {fmt_num(value)}"
                    f" (worst {fmt_num(worst)}){_diverged(g)}", {})  # fmt: skip
        part.numbers = {"group": g.label, "jobs": len(vals), "ok": len(known) - len(bad),
                        "worst": json_num(worst)}  # fmt: skip
        if len(known) < 2:
            part.why = f"too few seeds (n={len(known)})"
        elif bad:
            part.verdict = REFUTED
        elif len(known) < len(vals):
            part.why = f"{len(vals) - len(known)} job(s) without a value"
        else:
            part.verdict = CONFIRMED
        out.append(part)
    return out


def _combine(claim: dict, parts: list[Part]) -> ClaimResult:
    """Each part's verdict (Holm over the parts where one part decides), then the claim's."""
    tested = [p for p in parts if p.test is not None]
    p_claim = [p.test.p_claim for p in tested]
    p_other = [p.test.p_other for p in tested]
    if len(tested) > 1:  # one refuted part refutes `all`; one confirmed part confirms `any`
        p_other, p_claim = (
            (holm(p_other), p_claim) if claim["require"] == "all" else (p_other, holm(p_claim))
        )
    for part, pc, po in zip(tested, p_claim, p_other, strict=True):
        part.verdict = decide(pc, po)
        log = claim.get("scale") == "log" and claim["kind"] == "compare"
        part.text += _p_text(part.test, pc, po, len(tested), log)
        part.numbers["test"] = _test_numbers(part, pc, po)
    for part in parts:
        if part.verdict == INCONCLUSIVE and part.test is None and part.why:
            part.text += f"; {part.why}"
    verdicts = [p.verdict for p in parts]
    if claim["require"] == "all":
        ok, bad = all(v == CONFIRMED for v in verdicts), REFUTED in verdicts
    else:
        ok, bad = CONFIRMED in verdicts, all(v == REFUTED for v in verdicts)
    verdict = CONFIRMED if ok else REFUTED if bad else INCONCLUSIVE
    if len(parts) == 1:
        detail = parts[0].text
    else:
        counts = ", ".join(
            f"{verdicts.count(v)} {v}" for v in (CONFIRMED, REFUTED, INCONCLUSIVE) if v in verdicts
        )
        holm_note = f", Holm over {len(tested)}" if len(tested) > 1 else ""
        detail = f"{counts} (require {claim['require']}{holm_note}): " + "; ".join(
            f"[{p.verdict}] {p.text}" for p in parts
        )
    return ClaimResult(
        claim["text"], verdict, detail, [{"verdict": p.verdict, **p.numbers} for p in parts]
    )


def _p_text(test: Test, pc: float, po: float, holm_k: int, log: bool) -> str:
    """', p = 0.004' (the side the data point to), and for an inconclusive part what the seeds
    could detect and how many would resolve it."""
    text = f", {'Holm ' if holm_k > 1 else ''}p = {fmt_num(min(pc, po))}"
    if test.method == "point" or decide(pc, po) != INCONCLUSIVE:
        return "" if test.method == "point" else text
    mde, seeds = test.power()
    if test.method in ("welch", "t"):
        beyond = f"a ratio {fmt_num(math.exp(mde))}x" if log else f"a true effect {fmt_num(mde)}"
        text += f"; these seeds detect {beyond} beyond the boundary (80% power)"
    elif math.isnan(mde):
        text += f"; {test.method} with these seeds cannot reach p < 0.025"
    elif 0.5 + mde < 1:
        text += f"; these seeds detect P(claimed side) >= {0.5 + mde:.2f} (80% power)"
    else:
        text += "; these seeds detect only a complete separation"
    if math.isinf(seeds):
        return text + "; no number of seeds resolves an estimate on the boundary"
    return text + f"; about {int(seeds)} seeds per group would resolve the observed effect"


def _test_numbers(part: Part, pc: float, po: float) -> dict[str, Any]:
    test = part.test
    nums = {"method": test.method, "estimate": test.estimate, "lo": test.lo, "hi": test.hi,
            "p_claim": pc, "p_other": po}  # fmt: skip
    if part.verdict == INCONCLUSIVE:
        nums["mde"], nums["seeds_needed"] = test.power()
    return {k: json_num(v) if isinstance(v, float) else v for k, v in nums.items()}
