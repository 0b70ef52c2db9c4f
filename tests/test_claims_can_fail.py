"""No claim that cannot fail: every claim of every conf/experiment/*.yaml (found anew each run,
cross-sweep and best_of claims included) is judged on the experiment's own grid of groups, once with values
that satisfy it (confirmed) and once with values that violate it (refuted). Values lie inside
the metric's range (scores.metric_range), with a small spread across the sweep's seeds."""

from __future__ import annotations

import functools
import itertools
import math
from pathlib import Path
from typing import Any

import pytest
from omegaconf import OmegaConf
from test_experiments_a import sweep_params

from trainlab.claims import CONFIRMED, REFUTED, check_claim, evaluate_claim, matches
from trainlab.cli import conf_dir
from trainlab.compare import Group, Job, group_label
from trainlab.config import compose
from trainlab.schema import choices
from trainlab.scores import DERIVED, NEVER_KEYS, metric_range

EXPERIMENTS = sorted(p.stem for p in (Path(conf_dir()) / "experiment").glob("*.yaml"))


@functools.cache
def experiment(name: str) -> dict[str, Any]:
    return OmegaConf.to_container(compose([f"+experiment={name}"]).experiment)


@functools.cache
def group_choices(name: str, group_overrides: tuple[str, ...]) -> dict[str, str]:
    """The choices of a grid point: only config-group overrides can change them."""
    return {
        k: str(v) for k, v in choices(compose([f"+experiment={name}", *group_overrides])).items()
    }


def grid(name: str) -> tuple[list[dict[str, str]], list[dict[str, str]], int]:
    """(params, choices) of every group of the experiment's sweep, and its number of seeds.
    Each grid point is composed (a group option may set other groups) only when a claim
    selects on a key the sweep does not name: composing takes a while."""
    params = sweep_params(name)
    seeds = len(params.pop("seed", ["0", "1", "2"]))
    points = [
        dict(zip(params, combo, strict=True)) for combo in itertools.product(*params.values())
    ]
    claims = [*claims_of(name, "claims"), *claims_of(name, "best_of")]
    selected = {k for c in claims for k in _selector_keys(c)}
    if selected <= set(params):
        return points, [group_choices(name, ())] * len(points), seeds
    picks = [
        group_choices(name, tuple(f"{k}={v}" for k, v in p.items() if "." not in k)) for p in points
    ]
    return points, picks, seeds


def _selector_keys(claim: dict) -> set[str]:
    return {k for sel in ("a", "b", "where") for k in claim.get(sel) or {}}


def claims_of(name: str, key: str) -> list[dict]:
    exp = experiment(name)
    return (
        (exp.get("best_of") or {}).get("claims") or [] if key == "best_of" else exp.get(key) or []
    )


def cases() -> list[tuple[str, str, int]]:
    keys = ("claims", "cross_sweep_claims", "best_of")
    return [(n, k, i) for n in EXPERIMENTS for k in keys for i in range(len(claims_of(n, k)))]


# ---------------------------------------------------------------- values on either side


def beyond(t: float, edge: float) -> float:
    """A value strictly between t and the range's edge (or clearly past t when unbounded)."""
    return (t + edge) / 2 if math.isfinite(edge) else t + math.copysign(max(1.0, abs(t)), edge)


def summary(metric: str, value: float) -> dict[str, Any]:
    """A completed (or diverged) job's summary.json whose `metric` is `value`."""
    if metric == "diverged":
        return {"status": "diverged" if value > 0.5 else "completed"}
    if metric == "diverged_at_step":  # +inf: the job never diverged
        return (
            {"status": "completed"} if math.isinf(value) else {"status": "diverged", metric: value}
        )
    if metric == "train_error":
        return {"status": "completed", "train_acc": 1 - value}
    if metric == "acc_gap":
        return {"status": "completed", "train_acc": 0.5 + value / 2, "val_acc": 0.5 - value / 2}
    assert metric not in DERIVED, f"derived metric {metric!r}: teach summary() to build it"
    s: dict[str, Any] = {"status": "completed"}
    node, (*parents, leaf) = s, metric.split(".")
    for p in parents:
        node = node.setdefault(p, {})
    node[leaf] = None if math.isinf(value) and metric in NEVER_KEYS else value
    return s


class Sides:
    """Where a claim's boundary lies, in the space the claim is judged in (logs for ratios)."""

    def __init__(self, claim: dict) -> None:
        lo, hi = metric_range(claim["metric"])
        self.log = claim.get("scale") == "log" and claim["kind"] == "compare"
        self.lo, self.hi = (
            (math.log(lo) if lo > 0 else -math.inf, math.log(hi)) if self.log else (lo, hi)
        )
        self.above = claim["op"] in ("higher", ">", ">=")
        if claim["kind"] == "compare":
            f, m = float(claim["factor"]), float(claim["margin"]) * (-1 if claim["tolerant"] else 1)
            self.bound = (math.log(f) if self.log else m) * (1 if self.above else -1)
        else:
            self.bound, self.t = 0.0, float(claim["value"])
        if claim["kind"] == "compare":  # b sits where a's boundary t = b + bound has room
            room = 2 * abs(self.bound) + 2
            lo_ok, hi_ok = math.isfinite(self.lo), math.isfinite(self.hi)
            self.t = (
                (self.lo + self.hi) / 2
                if lo_ok and hi_ok
                else self.lo + room
                if lo_ok
                else self.hi - room
                if hi_ok
                else 0.0
            )
        self.b = self.t - self.bound

    def value(self, satisfy: bool) -> float:
        toward_hi = self.above == satisfy
        return beyond(self.t, self.hi if toward_hi else self.lo)

    def out(self, x: float) -> float:
        return math.exp(x) if self.log else x


def judged(claim: dict, points, picks, seeds: int, satisfy: bool, never: bool = False) -> str:
    sides = Sides(claim)
    target = sides.value(satisfy)
    spread = abs(target - sides.t) / 20
    groups = []
    for params, picked in zip(points, picks, strict=True):
        probe = Group("", params, [], picked)
        a = matches(probe, claim.get("a", claim.get("where", {})))
        b = claim["kind"] == "compare" and matches(probe, claim["b"])
        assert not (a and b), f"a group is on both sides: {params}"
        centre = target if a else sides.b
        noise = 0.0 if claim["kind"] == "all_jobs" else spread
        vals = [sides.out(centre + noise * (i - (seeds - 1) / 2)) for i in range(seeds)]
        if never and a:
            vals = [math.inf] * seeds
        jobs = [Job(Path("."), params, str(i), "completed", summary=summary(claim["metric"], v))
                for i, v in enumerate(vals)]  # fmt: skip
        for job in jobs:
            job.status = job.summary["status"]
        groups.append(Group(group_label(params), params, jobs, picked))
    return evaluate_claim(claim, groups)


@pytest.mark.parametrize("name, key, index", cases())
def test_claim_can_be_confirmed_and_refuted(name: str, key: str, index: int) -> None:
    claim = check_claim(claims_of(name, key)[index])
    if key == "cross_sweep_claims":
        labels = [v for sel in (claim["a"], claim["b"]) for v in [sel["search"]]]
        points, picks, seeds = [{"search": s} for s in labels], [{}, {}], 3
    else:
        points, picks, seeds = grid(name)
    if key == "best_of":  # one group per setting of the other keys: its best over `over`
        over = experiment(name)["best_of"]["over"]
        firsts = {group_label({k: v for k, v in p.items() if k not in over}): i
                  for i, p in reversed(list(enumerate(points)))}  # fmt: skip
        points = [{k: v for k, v in points[i].items() if k not in over} for i in firsts.values()]
        picks = [picks[i] for i in firsts.values()]
    ok = judged(claim, points, picks, seeds, satisfy=True)
    assert ok.verdict == CONFIRMED, f"{name}: {claim['text']}: cannot be confirmed: {ok.detail}"
    bad = judged(claim, points, picks, seeds, satisfy=False)
    assert bad.verdict == REFUTED, f"{name}: {claim['text']}: cannot be refuted: {bad.detail}"
    metric = claim["metric"]
    if (metric in NEVER_KEYS or metric.endswith("_to_target")) and not Sides(claim).above:
        never = judged(claim, points, picks, seeds, satisfy=True, never=True)  # a never gets there
        # compare: by ranks, whose power depends on the seeds and on Holm: never confirmed
        fine = (
            never.verdict != CONFIRMED if claim["kind"] == "compare" else never.verdict == REFUTED
        )
        assert fine, f"{name}: {claim['text']}: a job that never gets there: {never.detail}"
