"""Several sweeps compared as searches: markdown, CSV and the lines the terminal shows."""

from __future__ import annotations

import csv
import io
from typing import Any

from trainlab.claims import fmt_num, fmt_stat, metric_value
from trainlab.report.tables import (
    CSV_STATS,
    claim_lines,
    csv_num,
    markdown_table,
    rel_path,
    shortfall,
)
from trainlab.searches import Search, SearchComparison, seed_key
from trainlab.sweep import PROBLEMS, is_number

CROSS = "every experiment's cross_sweep_claims"


def _short_params(params: dict[str, str]) -> str:
    """'optimizer.lr=0.00316,regularizer.weight_decay=2.15e-05': numbers to 3 digits."""
    cells = [f"{k}={f'{float(v):.3g}' if is_number(v) else v}" for k, v in sorted(params.items())]
    return ",".join(cells) or "default"


def _best_cell(search: Search, metric: str, descending: bool) -> str:
    """The best configuration over all seeds, with its value and seed."""
    if not search.best.jobs:
        return "–"
    values = [(metric_value(j.summary, metric), j) for j in search.best.jobs]
    value, job = (max if descending else min)(values, key=lambda vj: vj[0])
    return f"{_short_params(job.params)} ({metric} {fmt_num(value)}, seed {job.seed})"


def search_headers(result: SearchComparison) -> list[str]:
    stats = [f"{result.rank_by} (best per seed)"]
    stats += [f"{m} (of that job)" for m in result.metrics[1:]]
    return ["rank", "search", "jobs", "seeds", *stats, "best configuration", *PROBLEMS]


def search_rows(result: SearchComparison, interval: bool) -> list[list[str]]:
    rows = []
    for rank, s in enumerate(result.searches, 1):
        cells = [fmt_stat(s.best.stat(m), interval) + shortfall(s.best, m) for m in result.metrics]
        best = _best_cell(s, result.rank_by, result.descending)
        counts = [str(s.count(p)) for p in PROBLEMS]
        rows.append([str(rank), s.label, str(len(s.jobs)), str(s.best.n), *cells, best, *counts])
    return rows


def seed_rows(result: SearchComparison) -> list[list[str]]:
    rows = []
    for s in result.searches:
        chosen = {j.seed: j for j in s.best.jobs}
        for seed in sorted({j.seed for j in s.jobs}, key=seed_key):
            job = chosen.get(seed)
            cells = [
                fmt_num(v) if job and (v := metric_value(job.summary, m)) is not None else "–"
                for m in result.metrics
            ]
            config = _short_params(job.params) if job else "no completed job"
            rows.append([s.label, str(seed), str(s.trials(seed)), *cells, config])
    return rows


def seed_headers(result: SearchComparison) -> list[str]:
    return ["search", "seed", "jobs", *result.metrics, "configuration chosen"]


def search_intro(result: SearchComparison, interval: bool = True) -> list[str]:
    """Where each search came from and how its cells were made (the terminal shows no
    intervals: `interval=False` says where they are)."""
    lines = [f"Search {s.label}: {len(s.jobs)} jobs in {s.sweep_dir}" for s in result.searches]
    better = "higher" if result.descending else "lower"
    cells = (
        "mean ± std [95% Student-t interval of the mean] over seeds of those per-seed bests."
        if interval
        else "mean ± std over seeds of those per-seed bests (intervals: comparison.md)."
    )
    lines.append(
        f"Per seed, each search's result is its best completed job by {result.rank_by} ({better}"
        f" is better): the configuration that search found with that seed. Cells: {cells}"
    )
    return lines + result.notes


def search_problem_lines(result: SearchComparison) -> list[str]:
    bad = [(s, j) for s in result.searches for j in s.jobs if j.status != "completed"]
    if not bad:
        return ["None: every job completed."]
    return [
        f"- {s.label} {j.status}: `{rel_path(j.path, s.sweep_dir)}`: {j.reason}" for s, j in bad
    ]


def format_search_markdown(result: SearchComparison) -> str:
    title = " vs ".join(s.label for s in result.searches)
    parts = [f"# Comparison of searches: {title}", "\n\n".join(search_intro(result))]
    parts += ["## Results", markdown_table(search_headers(result), search_rows(result, True))]
    parts += ["## Per seed", markdown_table(seed_headers(result), seed_rows(result))]
    parts += ["## Claims", *claim_lines(result.claims, True, CROSS)]
    parts += ["## Failed, diverged and missing jobs", "\n".join(search_problem_lines(result))]
    return "\n\n".join(parts) + "\n"


def format_search_csv(result: SearchComparison) -> str:
    cols = ["rank", "search", "sweep_dir", "jobs", "seeds", *PROBLEMS, "best_configuration"]
    for m in result.metrics:
        cols += [f"{m}_{s}" for s in CSV_STATS]
    out = io.StringIO()
    writer = csv.DictWriter(out, cols, lineterminator="\n")
    writer.writeheader()
    for rank, s in enumerate(result.searches, 1):
        row: dict[str, Any] = {"rank": rank, "search": s.label, "sweep_dir": str(s.sweep_dir)}
        row |= {"jobs": len(s.jobs), "seeds": s.best.n} | {p: s.count(p) for p in PROBLEMS}
        row["best_configuration"] = _best_cell(s, result.rank_by, result.descending)
        for m in result.metrics:
            st = s.best.stat(m)
            vals = (st.n, st.mean, st.std, st.lo, st.hi, st.never)
            row |= {f"{m}_{k}": csv_num(v) for k, v in zip(CSV_STATS, vals, strict=True)}
        writer.writerow(row)
    return out.getvalue()
