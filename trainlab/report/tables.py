"""The results of one sweep as tables: markdown (comparison.md), CSV, plain text."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from trainlab.claims import ClaimResult, fmt_stat, infinite_word
from trainlab.report.ensembles import METHOD, ensemble_table
from trainlab.sweep import PROBLEMS, Comparison, Group

TABLE_METRICS = (
    "val_acc", "best_val_acc", "test_acc", "train_loss",
    "steps_to_target", "seconds_to_target", "wall_time_s",
)  # fmt: skip


CSV_STATS = ("n", "mean", "std", "ci_low", "ci_high", "never")


def table_metrics(result: Comparison) -> list[str]:
    """The usual metrics, then every metric the claims judge (the table shows what they use)."""
    claims = [c for c in result.experiment.get("claims") or [] if isinstance(c, dict)]
    return list(
        dict.fromkeys([*TABLE_METRICS, *(str(c["metric"]) for c in claims if "metric" in c)])
    )


def result_headers(result: Comparison) -> list[str]:
    targets = {j.summary.get("target_train_error") for j in result.jobs if j.measured}
    target = (
        f" (train error <= {targets.pop()})" if len(targets) == 1 and None not in targets else ""
    )
    names = {
        "steps_to_target": f"steps to target{target}",
        "seconds_to_target": "seconds to target",
    }
    metrics = [names.get(m, m) for m in table_metrics(result)]
    return ["rank", "group", "n", *metrics, *PROBLEMS]


def result_rows(result: Comparison, interval: bool) -> list[list[str]]:
    rows = []
    for rank, g in enumerate(result.groups, 1):
        cells = [
            fmt_stat(g.stat(m), interval, infinite_word(m)) + shortfall(g, m)
            for m in table_metrics(result)
        ]
        rows.append([str(rank), g.label, str(g.n), *cells, *(str(g.count(s)) for s in PROBLEMS)])
    return rows


def shortfall(g: Group, metric: str) -> str:
    """' (n=2)' when some measured jobs lack the metric."""
    st = g.stat(metric)
    return f" (n={st.n})" if st.missing and st.n else ""


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines)


def text_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join(fmt.format(*r).rstrip() for r in [header, ["-" * w for w in widths], *rows])


def intro_lines(result: Comparison, interval: bool = True) -> list[str]:
    """What the tables hold; the terminal's table has no intervals and says so."""
    exp, jobs = result.experiment, result.jobs
    lines = (
        [f"Experiment {exp['name']}: {exp.get('description') or ''}".strip()]
        if exp.get("name")
        else []
    )
    measured = sum(j.measured for j in jobs)
    lines.append(
        f"{len(jobs)} jobs in {len(result.groups)} groups, {measured} measured (completed or diverged)."
    )
    better = "higher" if result.descending else "lower"
    cells = (
        "mean ± std [95% Student-t interval of the mean, clipped to the metric's range]"
        if interval
        else "mean ± std"
    )
    lines.append(
        f"Ranked by mean {result.rank_by} ({better} is better). Cells: {cells} over seeds;"
        " a diverged job scores the worst case (chance accuracy; 'k/n diverged': an infinite"
        " loss); 'k/n never': seeds that never reached the target; both left out of the mean and"
        " ranked as +inf; (n=k): only k seeds have that metric."
        + ("" if interval else " The 95% intervals are in comparison.md.")
    )
    return lines


def claim_lines(
    claims: Sequence[ClaimResult], markdown: bool, where: str = "experiment.claims"
) -> list[str]:
    if not claims:
        return [f"No claims stated ({where} is empty)."]
    if markdown:
        rows = [[c.text, f"**{c.verdict}**", c.detail] for c in claims]
        return [markdown_table(["claim", "verdict", "numbers"], rows)]
    return [f"[{c.verdict.upper()}] {c.text}\n    {c.detail}" for c in claims]


def problem_lines(result: Comparison) -> list[str]:
    bad = [j for j in result.jobs if j.status != "completed"]
    if not bad:
        return ["None: every job completed."]
    return [f"- {j.status}: `{rel_path(j.path, result.sweep_dir)}`: {j.reason}" for j in bad]


def rel_path(path: Path, root: Path) -> str:
    return str(path.relative_to(root)) if path != root else "."


def format_markdown(result: Comparison) -> str:
    title = result.experiment.get("name") or result.sweep_dir.name
    parts = [f"# Comparison: {title}", "\n\n".join(intro_lines(result))]
    parts += [
        "## Results",
        markdown_table(result_headers(result), result_rows(result, interval=True)),
    ]
    if result.ensembles:
        parts += ["## Ensembles", METHOD, markdown_table(*ensemble_table(result.ensembles))]
    parts += ["## Claims", *claim_lines(result.claims, markdown=True)]
    parts += ["## Failed, diverged and missing jobs", "\n".join(problem_lines(result))]
    plots = [p for p in result.files if p.suffix == ".png"]
    if plots:
        parts += [
            "## Plots",
            "\n".join(f"![{p.stem}]({rel_path(p, result.out)})" for p in plots),
        ]
    return "\n\n".join(parts) + "\n"


def format_csv(result: Comparison) -> str:
    keys = sorted({k for g in result.groups for k in g.params})
    cols = ["rank", "group", *keys, "n", *PROBLEMS]
    for m in table_metrics(result):
        cols += [f"{m}_{s}" for s in CSV_STATS]
    out = io.StringIO()
    writer = csv.DictWriter(out, cols, lineterminator="\n")
    writer.writeheader()
    for rank, g in enumerate(result.groups, 1):
        row: dict[str, Any] = {"rank": rank, "group": g.label, **g.params, "n": g.n}
        row |= {s: g.count(s) for s in PROBLEMS}
        for m in table_metrics(result):
            st = g.stat(m)
            vals = (st.n, st.mean, st.std, st.lo, st.hi, st.never)
            row |= {f"{m}_{s}": csv_num(v) for s, v in zip(CSV_STATS, vals, strict=True)}
        writer.writerow(row)
    return out.getvalue()


def csv_num(x: float | int) -> str:
    return (
        ""
        if isinstance(x, float) and math.isnan(x)
        else repr(x)
        if isinstance(x, float)
        else str(x)
    )
