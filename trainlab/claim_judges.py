"""The judges of each claim kind: which groups (pairs for compare) a claim is about, and each
one's numbers and test as a Part. claims.py combines the parts into the claim's verdict."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from trainlab.claim_spec import JOB_OPS, GroupLike, select
from trainlab.fmt import fmt_num, fmt_stat, infinite_word, json_num, stat_numbers
from trainlab.scores import metric_range
from trainlab.verdict import (
    CONFIRMED,
    INCONCLUSIVE,
    REFUTED,
    Stat,
    Test,
    describe,
    difference,
    one_sample,
)


@dataclass
class Part:
    """One pair (compare) or group (threshold, all_jobs) of a claim."""

    text: str
    numbers: dict[str, Any]
    test: Test | None = None  # None: decided without statistics (all_jobs, too few seeds)
    verdict: str = INCONCLUSIVE
    why: str = ""  # why inconclusive without a test


def _short(group: GroupLike, keys: Iterable[str]) -> str:
    """The part of a group's label that the selector names (`activation=relu`)."""
    parts = [f"{k}={group.params.get(k, group.choices.get(k))}" for k in keys]
    return ",".join(parts) or group.label


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
    side_a, side_b = select(groups, claim["a"]), select(groups, claim["b"])
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
    chosen = select(groups, claim["where"])
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
    chosen = select(groups, claim["where"])
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


JUDGES = {"compare": _eval_compare, "threshold": _eval_threshold, "all_jobs": _eval_all_jobs}
