"""report.html: one self-contained page per compared sweep, for a person to open.

The page holds the experiment's description, the claims with their verdicts (coloured) and the
numbers behind each part, the results table, the ensembles, every plot inline (base64 PNG: the
page needs no other file), and the problem jobs. Built from the Jinja2 template
trainlab/report/templates/report.html.j2 (shipped in the wheel); written atomically.
"""

from __future__ import annotations

import base64
import functools
import math
from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from trainlab.claims import ClaimResult
from trainlab.fmt import fmt_num
from trainlab.io import atomic_write_text
from trainlab.report.ensembles import METHOD, ensemble_table
from trainlab.report.search_tables import (
    search_headers,
    search_intro,
    search_rows,
    seed_headers,
    seed_rows,
)
from trainlab.report.tables import (
    intro_lines,
    rel_path,
    result_headers,
    result_rows,
    table_metrics,
)
from trainlab.searches import SearchComparison
from trainlab.sweep import Comparison, Job

VERDICTS = ("confirmed", "refuted", "inconclusive")
METHODS = {
    "t": "Student t", "welch": "Welch t", "ranks": "Mann-Whitney", "signs": "sign test",
    "point": "all seeds equal",
}  # fmt: skip
PROBLEM_KINDS = ("diverged", "failed", "killed", "interrupted", "never started", "missing")


@functools.cache
def environment():
    """Jinja2 with HTML autoescaping, the templates from the package (a wheel too); one per
    process, which keeps each template compiled (trainlab.compare_worker compiles the report's
    while a sweep trains)."""
    from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

    return Environment(
        loader=PackageLoader("trainlab.report", "templates"),
        autoescape=select_autoescape(["html", "j2"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def write_report(result: Comparison, plots: Sequence[Path]) -> Path:
    path = result.out / "report.html"
    atomic_write_text(path, format_report(result, plots))
    return path


def format_report(result: Comparison, plots: Sequence[Path]) -> str:
    exp = result.experiment
    tables = [table("results", "Results", result_headers(result),
                    result_rows(result, interval=True), ranked=ranked_column(result))]  # fmt: skip
    if result.ensembles:
        tables.append(table("ensembles", "Ensembles", *ensemble_table(result.ensembles), METHOD))
    return render(
        title=f"Experiment {exp.get('name') or result.sweep_dir.name}",
        description=exp.get("description") or "",
        sweep=str(result.sweep_dir),
        intro=intro_lines(result)[1:] if exp.get("name") else intro_lines(result),
        jobs=result.jobs,
        claims=result.claims,
        tables=tables,
        plots=[plot_view(p) for p in plots],
        problems=[problem_view(j, result.sweep_dir) for j in result.jobs],
    )


def format_search_report(result: SearchComparison) -> str:
    """The page of several sweeps compared as searches: no plots, the per-seed table."""
    header = search_headers(result)
    tables = [
        table("results", "Results", header, search_rows(result, True), ranked=header.index(
            f"{result.rank_by} (best per seed)")),
        table("per-seed", "Per seed", seed_headers(result), seed_rows(result)),
    ]  # fmt: skip
    return render(
        title="Searches " + " vs ".join(s.label for s in result.searches),
        description="",
        sweep=", ".join(str(s.sweep_dir) for s in result.searches),
        intro=search_intro(result),
        jobs=[j for s in result.searches for j in s.jobs],
        claims=result.claims,
        tables=tables,
        plots=None,
        problems=[problem_view(j, s.sweep_dir, s.label) for s in result.searches for j in s.jobs],
    )


def table(
    id_: str, title: str, header: list[str], rows: list[list[str]], note: str = "", ranked: int = -1
) -> dict[str, Any]:
    return {"id": id_, "title": title, "header": header, "rows": rows, "note": note,
            "ranked": ranked}  # fmt: skip


def render(jobs: Sequence[Job], claims: Sequence[ClaimResult], problems: list, **context) -> str:
    views = [claim_view(c) for c in claims]
    return (
        environment()
        .get_template("report.html.j2")
        .render(
            written=now(),
            job_counts=job_counts(jobs),
            verdict_counts=verdict_counts(claims),
            claims=views,
            has_mde=any(p["mde"] != "–" for c in views for p in c["parts"]),
            problems=[p for p in problems if p],
            **context,
        )
    )


def write_search_report(result: SearchComparison) -> Path:
    path = result.out_dir / "report.html"
    atomic_write_text(path, format_search_report(result))
    return path


def ranked_column(result: Comparison) -> int:
    """The results table's column of the ranking metric (after rank, group, n); -1: none."""
    metrics = table_metrics(result)
    return 3 + metrics.index(result.rank_by) if result.rank_by in metrics else -1


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def job_counts(jobs: Sequence[Job]) -> dict[str, int]:
    """{'completed': 10, 'diverged': 2, 'killed': 1, ...}: the statuses that occur, in order."""
    counts = Counter(problem_kind(j) or "completed" for j in jobs)
    return {k: counts[k] for k in ("completed", *PROBLEM_KINDS) if counts[k]}


def verdict_counts(claims: Sequence[ClaimResult | dict[str, Any]]) -> dict[str, int]:
    counts = Counter(c["verdict"] if isinstance(c, dict) else c.verdict for c in claims)
    return {v: counts[v] for v in VERDICTS}


def problem_kind(job: Job) -> str | None:
    """None for a completed job; else diverged, failed, killed, interrupted, never started or
    missing (no summary.json: killed, or still running)."""
    if job.status != "missing":
        return None if job.status == "completed" else job.status
    return next((k for k in PROBLEM_KINDS[2:5] if job.reason.startswith(k)), "missing")


def problem_view(job: Job, root: Path, search: str = "") -> dict[str, str] | None:
    kind = problem_kind(job)
    if kind is None:
        return None
    where = f"{search}: " if search else ""
    return {"kind": kind, "job": where + rel_path(job.path, root), "reason": job.reason}


def plot_view(path: Path) -> dict[str, str]:
    """The PNG inline (data: URL), its name as the caption."""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return {"name": path.stem, "src": f"data:image/png;base64,{data}"}


def claim_view(claim: ClaimResult) -> dict[str, Any]:
    return {
        "text": claim.text,
        "verdict": claim.verdict,
        "detail": claim.detail,
        "parts": [part_view(n) for n in claim.numbers],
    }


def part_view(nums: dict[str, Any]) -> dict[str, str]:
    """One part of a claim as table cells: what, estimate, 95% interval, p, seeds, the smallest
    effect these seeds detect (inconclusive parts only), the seeds that would resolve it."""
    test = nums.get("test") or {}
    a, b = nums.get("a"), nums.get("b")
    if a and b:
        what, seeds = f"{a['group']} vs {b['group']}", f"{a['n']} vs {b['n']}"
    else:
        what, seeds = str(nums.get("group", "")), str(nums.get("n", nums.get("jobs", "")))
    estimate = test.get("estimate", nums.get("mean", nums.get("worst")))
    lo, hi = test.get("lo", nums.get("lo")), test.get("hi", nums.get("hi"))
    p = [x for x in (test.get("p_claim"), test.get("p_other")) if isinstance(x, (int, float))]
    return {
        "verdict": str(nums.get("verdict", "")),
        "what": what,
        "method": METHODS.get(
            test.get("method"), test.get("method", "each job" if "ok" in nums else "–")
        ),
        "estimate": num(estimate),
        "interval": f"[{num(lo)}, {num(hi)}]" if lo is not None and hi is not None else "–",
        "p": p_text(min(p)) if p and test.get("method") != "point" else "–",
        "seeds": seeds + (f" ({nums['ok']} ok)" if "ok" in nums else ""),
        "mde": num(test["mde"]) if "mde" in test else "–",
        "seeds_needed": num(test["seeds_needed"]) if "seeds_needed" in test else "–",
    }


def p_text(p: float) -> str:
    return "≈ 0" if p == 0 else num(p)  # below the smallest float: 'p = 0' would claim certainty


def num(x: Any) -> str:
    """A number as the tables write it; JSON's 'inf' strings and None as words."""
    if x is None:
        return "–"
    if isinstance(x, str):
        return {"inf": "∞", "-inf": "-∞"}.get(x, x)
    if isinstance(x, float) and math.isinf(x):
        return "∞" if x > 0 else "-∞"
    return fmt_num(float(x)) if isinstance(x, (int, float)) else str(x)
