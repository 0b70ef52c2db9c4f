"""A claim's spec: the kinds and operators it may use, its check (defaults filled in, one-line
errors), and the selectors that pick the groups it is about. The format is in claims.py."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from trainlab.verdict import Stat

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


class GroupLike(Protocol):
    label: str
    params: dict[str, str]  # grouping overrides
    choices: dict[str, str]  # summary.json choices shared by the group's jobs

    def stat(self, metric: str) -> Stat: ...

    def values(self, metric: str) -> list[float | None]: ...  # scores.job_value per job


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


def select(groups: Sequence[GroupLike], where: Mapping[str, Any]) -> list[GroupLike]:
    return [g for g in groups if matches(g, where)]
