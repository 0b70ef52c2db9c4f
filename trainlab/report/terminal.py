"""What compare prints: the intro, a compact table, the claims, the problem jobs."""

from __future__ import annotations

from trainlab.report.ensembles import ensemble_table
from trainlab.report.search_tables import (
    CROSS,
    search_headers,
    search_intro,
    search_problem_lines,
    search_rows,
    seed_headers,
    seed_rows,
)
from trainlab.report.tables import (
    claim_lines,
    intro_lines,
    problem_lines,
    result_headers,
    result_rows,
    text_table,
)
from trainlab.searches import SearchComparison
from trainlab.sweep import Comparison


def format_terminal(result: Comparison) -> str:
    parts = [
        *intro_lines(result, interval=False),
        "",
        text_table(result_headers(result), result_rows(result, interval=False)),
    ]
    if result.ensembles:
        parts += [
            "",
            "Ensembles of each group's seeds:",
            text_table(*ensemble_table(result.ensembles)),
        ]
    parts += ["", "Claims:", *claim_lines(result.claims, markdown=False)]
    if any(j.status != "completed" for j in result.jobs):
        parts += ["", "Failed, diverged and missing jobs:", *problem_lines(result)]
    parts += [
        "",
        f"Wrote {result.out / 'comparison.md'} (and .csv, claims.json, report.html, plots/, _compare/)",
    ]
    return "\n".join(parts)


def format_search_terminal(result: SearchComparison) -> str:
    parts = [*search_intro(result), ""]
    parts += [text_table(search_headers(result), search_rows(result, interval=True)), ""]
    parts += ["Per seed:", text_table(seed_headers(result), seed_rows(result))]
    parts += ["", "Claims:", *claim_lines(result.claims, False, CROSS)]
    if any(j.status != "completed" for s in result.searches for j in s.jobs):
        parts += ["", "Failed, diverged and missing jobs:", *search_problem_lines(result)]
    parts += [
        "",
        f"Wrote {result.out_dir / 'comparison.md'} (and comparison.csv, claims.json, report.html)",
    ]
    return "\n".join(parts)
