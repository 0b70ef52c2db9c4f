"""What compare prints: the intro, a compact table, the claims, the problem jobs."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

from trainlab.claims import CONFIRMED, ClaimResult
from trainlab.report.search_tables import (
    CROSS,
    search_headers,
    search_intro,
    search_problem_lines,
    search_rows,
    seed_headers,
    seed_rows,
)
from trainlab.report.tables import result_headers, result_rows, table_metrics, text_table
from trainlab.searches import SearchComparison
from trainlab.sweep import PROBLEMS, Comparison, group_label
from trainlab.terminal import short_keys

WIDTH = 100  # every line compare prints fits this many columns
GROUP_WIDTH = 40  # a group's label is cut to this in the terminal's table


def format_terminal(result: Comparison) -> str:
    """The compact view: the ranking, the verdicts and the problem jobs in 100 columns; every
    number and interval, the ensembles and each job's reason are in comparison.md."""
    header = [h.split(" (")[0] for h in result_headers(result)]  # "steps to target"
    rows = result_rows(result, interval=False)
    names = ["rank", "group", "n", *table_metrics(result), *PROBLEMS]  # the columns' metrics
    first = names.index(result.rank_by) if result.rank_by in names else 3
    order = [0, 1, 2, first, *(i for i in range(3, len(header)) if i != first)]
    table = fit_table([header[i] for i in order], [[r[i] for i in order] for r in rows])
    parts = [*_wrap(_intro(result)), "", *table]
    parts += ["", *claim_table(result.claims)]
    if any(j.status != "completed" for j in result.jobs):
        parts += ["", *problem_summary(result)]
    ensembles = " ensembles," if result.ensembles else ""
    parts += ["", *_wrap(f"Wrote {result.out / 'comparison.md'} (every column with intervals,"
                         f"{ensembles} each claim's numbers; and .csv, claims.json, report.html, "
                         "plots/, _compare/)", keep=2)]  # fmt: skip
    return "\n".join(parts)


def _intro(result: Comparison) -> str:
    exp = result.experiment
    measured = sum(j.measured for j in result.jobs)
    better = "higher" if result.descending else "lower"
    name = f"{exp['name']}: " if exp.get("name") else ""
    return (f"{name}{len(result.jobs)} jobs in {len(result.groups)} groups, {measured} measured. "
            f"Ranked by mean {result.rank_by} ({better} is better); cells: mean ± std over "
            "seeds; 'never': seeds that never reached the target.")  # fmt: skip


def _wrap(text: str, indent: str = "", keep: int = 1) -> list[str]:
    """Lines of at most WIDTH columns (a longer word stays whole); the first `keep` words stay
    together ('Wrote PATH' is never split: textwrap does not break at a no-break space)."""
    words = text.split(" ")
    text = "\xa0".join(words[:keep]) + " " * (len(words) > keep) + " ".join(words[keep:])
    lines = textwrap.wrap(text, WIDTH, subsequent_indent=indent, break_long_words=False,
                          break_on_hyphens=False)  # fmt: skip
    return [line.replace("\xa0", " ") for line in lines] or [""]


def fit_table(header: list[str], rows: list[list[str]], keep: int = 4) -> list[str]:
    """A text table of the first `keep` columns and as many more as fit WIDTH columns; long
    group labels are cut (…); the columns left out are named below it."""
    rows = [[_cut(c, GROUP_WIDTH) if i == 1 else c for i, c in enumerate(r)] for r in rows]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    shown, total = [], -2
    for i, w in enumerate(widths):
        if i >= keep and total + 2 + w > WIDTH:
            break
        shown.append(i)
        total += 2 + w
    table = text_table([header[i] for i in shown], [[r[i] for i in shown] for r in rows])
    lines = table.split("\n")
    left = [header[i] for i in range(len(header)) if i not in shown]
    if left:
        lines += _wrap(f"(in comparison.md also: {', '.join(left)})")
    return lines


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def claim_table(claims: Sequence[ClaimResult], where: str = "experiment.claims") -> list[str]:
    """One row per claim: its verdict, how many of its parts were confirmed, its text wrapped
    to fit; the numbers behind each verdict are in comparison.md and report.html."""
    if not claims:
        return [f"No claims stated ({where} is empty)."]
    rows = [(c.verdict.upper(), _parts(c), c.text) for c in claims]
    w_verdict = max(len("verdict"), *(len(r[0]) for r in rows))
    w_parts = max(len("parts"), *(len(r[1]) for r in rows))
    w_text = WIDTH - w_verdict - w_parts - 4
    pad = " " * (w_verdict + w_parts + 4)
    lines = ["Claims (the numbers behind each verdict: comparison.md, report.html):",
             f"{'verdict':<{w_verdict}}  {'parts':<{w_parts}}  claim"]  # fmt: skip
    for verdict, parts, text in rows:
        wrapped = textwrap.wrap(text, w_text) or [""]
        lines.append(f"{verdict:<{w_verdict}}  {parts:<{w_parts}}  {wrapped[0]}")
        lines += [pad + more for more in wrapped[1:]]
    return lines


def _parts(claim: ClaimResult) -> str:
    """'4/5 confirmed' for a claim of several parts (pairs or groups), '' for one."""
    verdicts = [n.get("verdict") for n in claim.numbers]
    if len(verdicts) < 2:
        return ""
    return f"{verdicts.count(CONFIRMED)}/{len(verdicts)} confirmed"


def problem_summary(result: Comparison) -> list[str]:
    """The jobs that did not complete, by status and group, each group with its first job's
    reason (cut to the width): 'diverged 10:' then '  a (5 jobs): diverged at step 10: ...'."""
    lines = ["Jobs that did not complete (every job's reason: comparison.md):"]
    for status in PROBLEMS:
        groups: dict[str, list[str]] = {}
        for job in result.jobs:
            if job.status == status:
                groups.setdefault(group_label(job.params) or "default", []).append(job.reason)
        if groups:
            lines.append(f"{status} {sum(len(r) for r in groups.values())}:")
            for label, reasons in groups.items():
                jobs = f"{len(reasons)} job{'s' * (len(reasons) != 1)}"
                lines.append(_cut(f"  {label} ({jobs}): {reasons[0]}", WIDTH))
    return lines


def format_search_terminal(result: SearchComparison) -> str:
    """Several searches in 100 columns: the ranking (problem counts before the best
    configuration, which is named below it when it does not fit), each seed's choice with
    the configuration cut to fit, the claims, the problem jobs; every number in comparison.md."""
    intro = search_intro(result, interval=False)
    n = len(result.searches)  # 'Search NAME: N jobs in PATH' lines stay whole
    parts = [*intro[:n], *(line for text in intro[n:] for line in _wrap(text))]
    header, rows = search_headers(result), search_rows(result, interval=False)
    header[4:] = [h.split(" (")[0] if i else h for i, h in enumerate(header[4:])]
    best = header.index("best configuration")
    order = [*range(best), *range(best + 1, len(header)), best]
    parts += ["", *fit_table([header[i] for i in order], [[r[i] for i in order] for r in rows], 5)]
    seeds = [[*r[:-1], short_keys(r[-1])] for r in seed_rows(result)]
    parts += ["", "Per seed:", *fit_last(seed_headers(result), seeds)]
    parts += ["", *claim_table(result.claims, CROSS)]
    if any(j.status != "completed" for s in result.searches for j in s.jobs):
        problems = search_problem_lines(result)
        parts += ["", "Failed, diverged and missing jobs:", *(_cut(p, WIDTH) for p in problems)]
    parts += ["", *_wrap(f"Wrote {result.out_dir / 'comparison.md'} (every number with intervals;"
                         " and comparison.csv, claims.json, report.html)", keep=2)]  # fmt: skip
    return "\n".join(parts)


def fit_last(header: list[str], rows: list[list[str]]) -> list[str]:
    """A text table whose last column is cut (…) so that every line fits WIDTH columns."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
    room = max(WIDTH - sum(w + 2 for w in widths), len(header[-1]))
    return text_table(header, [[*r[:-1], _cut(r[-1], room)] for r in rows]).split("\n")
