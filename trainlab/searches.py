"""`trainlab compare SWEEP_A SWEEP_B ...`: each sweep is a hyperparameter search.

For each seed, the search's result is its best completed job by the ranking metric (selected on
validation, as a search would); the searches are compared over those per-seed bests, and judged
by the `experiment.cross_sweep_claims` of their experiments (schema and verdicts: claims.py).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainlab.claims import ClaimResult, evaluate_claims, metric_value
from trainlab.sweep import (
    Group,
    Job,
    group_label,
    load_sweep,
    rank_groups,
    rank_setting,
    safe_name,
    shared_choices,
)


@dataclass
class Search:
    """One sweep seen as a search: `best` holds one job per seed, labelled {search: label}."""

    label: str
    sweep_dir: Path
    experiment: dict[str, Any]
    jobs: list[Job]  # every job of the sweep
    best: Group

    def trials(self, seed: str | None) -> int:
        return sum(j.seed == seed for j in self.jobs)

    def count(self, status: str) -> int:
        return sum(j.status == status for j in self.jobs)


@dataclass
class SearchComparison:
    searches: list[Search]  # ranked, best first
    out_dir: Path
    rank_by: str
    descending: bool
    claims: list[ClaimResult]
    notes: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)

    @property
    def metrics(self) -> list[str]:
        return list(dict.fromkeys((self.rank_by, "test_acc")))


def best_per_seed(jobs: Sequence[Job], metric: str, descending: bool) -> list[Job]:
    """For each seed, the completed job with the best value of `metric` (first on ties);
    diverged jobs are results but not configurations a search would pick."""
    best: dict[str | None, tuple[float, Job]] = {}
    for job in jobs:
        value = metric_value(job.summary, metric) if job.status == "completed" else None
        if value is None or math.isnan(value):
            continue
        held = best.get(job.seed)
        if held is None or (value > held[0] if descending else value < held[0]):
            best[job.seed] = (value, job)
    return [best[seed][1] for seed in sorted(best, key=seed_key)]


def seed_key(seed: str | None) -> tuple:
    try:
        return (0, float(seed), "")  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return (1, 0.0, str(seed))


def search_labels(sweeps: Sequence[Path], experiments: Sequence[dict[str, Any]]) -> list[str]:
    """Each sweep's experiment name (else its directory name); `name@dir` where two collide."""
    names = [str(e.get("name") or p.name) for p, e in zip(sweeps, experiments, strict=True)]
    return [
        f"{n}@{p.name}" if names.count(n) > 1 else n for n, p in zip(names, sweeps, strict=True)
    ]


def cross_sweep_claims(experiments: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every experiment's `cross_sweep_claims`, in sweep order, each claim once."""
    claims: list[dict[str, Any]] = []
    for exp in experiments:
        for claim in exp.get("cross_sweep_claims") or []:
            if claim not in claims:
                claims.append(claim)
    return claims


def judge_searches(
    sweep_dirs: Sequence[str | Path], out_dir: str | Path | None = None
) -> SearchComparison:
    """Read several sweeps as searches, rank them, judge the cross-sweep claims; out_dir is
    where the outputs will go (default: a folder named after the searches inside the first)."""
    sweeps = [Path(d) for d in sweep_dirs]
    loaded = [load_sweep(p) for p in sweeps]
    experiments = [exp for _, exp in loaded]
    labels = search_labels(sweeps, experiments)
    rank_by, descending = rank_setting(experiments[0])
    notes = [
        f"{label} ranks by {rank_setting(exp)[0]}; every search is judged by {rank_by} here"
        for label, exp in zip(labels, experiments, strict=True)
        if rank_setting(exp)[0] != rank_by
    ]
    searches = []
    for label, path, (jobs, exp) in zip(labels, sweeps, loaded, strict=True):
        best = best_per_seed(jobs, rank_by, descending)
        group = Group(label, {"search": label}, best, shared_choices(best))
        searches.append(Search(label, path, exp, jobs, group))
    ranked = rank_groups([s.best for s in searches], rank_by, descending)
    searches.sort(key=lambda s: next(i for i, g in enumerate(ranked) if g is s.best))
    claims = evaluate_claims(cross_sweep_claims(experiments), ranked)
    out = Path(out_dir) if out_dir else sweeps[0] / safe_name("_vs_".join(labels))
    return SearchComparison(searches, out, rank_by, descending, claims, notes)


def best_of_groups(
    jobs: Sequence[Job], over: Sequence[str], metric: str, descending: bool
) -> list[Group]:
    """Groups without the keys `over` (e.g. optimizer.lr), each holding per seed its best
    completed job over those keys by `metric`: every configuration at its own best setting,
    found as a small grid search would find it (selected on the ranking metric)."""
    by_label: dict[str, list[Job]] = {}
    for job in jobs:
        params = {k: v for k, v in job.params.items() if k not in over}
        by_label.setdefault(group_label(params), []).append(job)
    groups = []
    for label, members in by_label.items():
        best = best_per_seed(members, metric, descending)
        params = {k: v for k, v in members[0].params.items() if k not in over}
        groups.append(Group(label, params, best, shared_choices(members)))
    return groups


def best_of_claims(
    experiment: dict[str, Any], jobs: Sequence[Job], rank_by: str, descending: bool
) -> list[ClaimResult]:
    """`experiment.best_of: {over: [KEY, ...], claims: [...]}`: claims judged on each group at
    its best value of the `over` keys per seed (best_of_groups, by the ranking metric)."""
    spec = experiment.get("best_of") or {}
    over = list(spec.get("over") or [])
    if not over or not spec.get("claims"):
        return []
    results = evaluate_claims(spec["claims"], best_of_groups(jobs, over, rank_by, descending))
    for result in results:
        result.text = f"[each at its best {', '.join(over)}] {result.text}"
    return results
