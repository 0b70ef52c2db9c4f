"""`trainlab compare SWEEP_DIR`: the verdict of a sweep, from plain files only.

Reads every job directory below SWEEP_DIR (a folder holding `.hydra/overrides.yaml`), groups the
jobs by their overrides without the seed, and writes into SWEEP_DIR:
  comparison.md   ranked table (mean ± std [95% t-interval] over seeds), claims, problem jobs
  comparison.csv  one row per group
  claims.json     the experiment's claims with verdicts and the numbers behind them
  plots/          mean ± std learning curves; the ranking metric against each swept numeric key
  _compare/<group>/{mean,mean+std,mean-std}   TensorBoard runs beside the jobs' own runs

Statistics are over a group's *measured* jobs: status completed or diverged (a diverged run is
a result). Failed jobs (an exception: a bug, not a measurement) and jobs with no readable
summary.json (killed) are counted and listed, never averaged. A metric a job lacks (absent, null,
NaN) is left out of that metric only; a null `steps_to_target`/`seconds_to_target` is "never
reached": reported as "k/n never", left out of the mean, and ranked as +inf (see claims.py).

`trainlab compare SWEEP_A SWEEP_B ... [--out DIR]` compares sweeps as hyperparameter searches
(e.g. hparam_search against hparam_grid): per search and seed, the best completed job by the
ranking metric; a table of those per-seed bests, and the experiments' `cross_sweep_claims`.
It only reads the sweeps, and writes comparison.md, comparison.csv and claims.json into DIR
(default SWEEP_A/<search>_vs_<search>/, so SWEEP_A's own comparison.md stays).
"""

from __future__ import annotations

import csv
import io
import json
import math
import shutil
import sys
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

import yaml

from trainlab import ensembles
from trainlab.claims import (
    ClaimResult,
    Stat,
    describe,
    evaluate_claims,
    fmt_num,
    fmt_stat,
    lower_is_better,
    metric_value,
)
from trainlab.errors import ConfigError

TABLE_METRICS = (
    "val_acc", "best_val_acc", "test_acc", "train_loss",
    "steps_to_target", "seconds_to_target", "wall_time_s",
)  # fmt: skip
CURVE_TAGS = {
    "val_acc": "val/acc",
    "val_loss": "val/loss",
    "train_loss": "train/loss",
    "train_acc": "train/acc",
}
CSV_STATS = ("n", "mean", "std", "ci_low", "ci_high", "never")
PLOT_CURVES = ("val_acc", "train_loss")
PROBLEMS = ("diverged", "failed", "missing")
ALWAYS_IGNORED = ("seed", "experiment")  # plus hydra.* and hydra/*; more from the jobs' hydra.yaml


@dataclass
class Job:
    path: Path
    params: dict[str, str]  # grouping overrides: key -> value as written
    seed: str | None
    status: str  # completed | diverged | failed | missing
    reason: str = ""  # why it is not completed
    summary: dict[str, Any] = field(default_factory=dict)
    history: dict[str, Any] | None = None

    @property
    def measured(self) -> bool:
        return self.status in ("completed", "diverged")


@dataclass
class Group:
    label: str
    params: dict[str, str]
    jobs: list[Job]
    choices: dict[str, str] = field(default_factory=dict)  # summary choices all its jobs share

    @property
    def n(self) -> int:
        return sum(j.measured for j in self.jobs)

    def values(self, metric: str) -> list[float | None]:
        return [metric_value(j.summary, metric) for j in self.jobs if j.measured]

    def stat(self, metric: str) -> Stat:
        return describe(self.values(metric))

    def count(self, status: str) -> int:
        return sum(j.status == status for j in self.jobs)


@dataclass
class Comparison:
    sweep_dir: Path
    groups: list[Group]  # ranked, best first
    experiment: dict[str, Any]
    rank_by: str
    descending: bool
    claims: list[ClaimResult]
    files: list[Path] = field(default_factory=list)  # what compare wrote
    ensembles: list[ensembles.EnsembleRow] = field(default_factory=list)  # per group and split

    @property
    def jobs(self) -> list[Job]:
        return [j for g in self.groups for j in g.jobs]


# ---------------------------------------------------------------- reading a sweep


def find_job_dirs(sweep_dir: Path) -> list[Path]:
    """Every directory below sweep_dir (itself included) that holds `.hydra/overrides.yaml`."""
    found = (
        p.parent.parent for p in sweep_dir.rglob("overrides.yaml") if p.parent.name == ".hydra"
    )
    return sorted(found)


def parse_override(text: str) -> tuple[str, str]:
    """'+optimizer.lr=0.01' -> ('optimizer.lr', '0.01'); '~key' -> ('key', '~')."""
    key, _, value = text.partition("=")
    if key.startswith("~"):
        return key.lstrip("~"), "~"
    return key.lstrip("+"), value


def ignored_keys(job_dirs: Sequence[Path]) -> set[str]:
    """Keys that do not define a group: the seed, the experiment, and what the sweep's run names
    leave out (hydra.job.config.override_dirname.exclude_keys in the first job's hydra.yaml)."""
    keys = set(ALWAYS_IGNORED)
    for job_dir in job_dirs[:1]:
        hydra_cfg = _read_yaml(job_dir / ".hydra" / "hydra.yaml") or {}
        job = (hydra_cfg.get("hydra") or {}).get("job") or {}
        excluded = ((job.get("config") or {}).get("override_dirname") or {}).get(
            "exclude_keys"
        ) or []
        keys |= {str(k).lstrip("+") for k in excluded}
    return keys


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return None


def _read_json(path: Path) -> tuple[Any, str]:
    """(object, "") or (None, why not)."""
    if not path.is_file():
        return None, f"no {path.name}"
    try:
        return json.loads(path.read_text()), ""
    except (OSError, ValueError) as err:
        return None, f"unreadable {path.name}: {type(err).__name__}: {str(err).splitlines()[0]}"


def load_job(job_dir: Path, ignored: set[str]) -> Job:
    summary, why = _read_json(job_dir / "summary.json")
    history, _ = _read_json(job_dir / "history.json")
    overrides = _read_yaml(job_dir / ".hydra" / "overrides.yaml")
    if not isinstance(overrides, list):  # fall back on the copy in summary.json
        overrides = summary.get("overrides") if isinstance(summary, dict) else None
    if not isinstance(overrides, list):  # a group of its own rather than a wrong one
        overrides = [f"unreadable_overrides={job_dir.name}"]
    params, seed = split_overrides(map(str, overrides), ignored)
    job = Job(
        job_dir, params, seed, "missing", history=history if isinstance(history, dict) else None
    )
    if summary is None:
        job.reason = why if why.startswith("unreadable") else f"{why} (job killed or still running)"
        return job
    if not isinstance(summary, dict):
        job.reason = f"summary.json holds a {type(summary).__name__}, not an object"
        return job
    job.summary, job.status = summary, str(summary.get("status"))
    if job.seed is None and summary.get("seed") is not None:
        job.seed = str(summary["seed"])
    job.reason = _reason(job)
    return job


def split_overrides(
    overrides: Iterable[str], ignored: set[str]
) -> tuple[dict[str, str], str | None]:
    """(grouping overrides key -> value, seed): without the seed, ignored keys and hydra.*."""
    params, seed = {}, None
    for text in overrides:
        key, value = parse_override(text)
        if key == "seed":
            seed = value
        elif key not in ignored and key != "hydra" and not key.startswith(("hydra.", "hydra/")):
            params[key] = value
    return params, seed


def _reason(job: Job) -> str:
    s = job.summary
    if job.status == "diverged":
        at = s.get("diverged_at_step")
        return (
            f"diverged at step {at}: {s.get('error', '')}"
            if at is not None
            else str(s.get("error", ""))
        )
    if job.status == "failed":
        return str(s.get("error") or "failed (no error recorded)")
    if job.status != "completed":
        job.status = "missing"
        return f"incomplete summary.json (status {s.get('status')!r})"
    return ""


def group_jobs(jobs: Sequence[Job]) -> list[Group]:
    """Jobs with the same overrides but the seed form a group, labelled by those overrides."""
    by_label: dict[str, list[Job]] = defaultdict(list)
    for job in jobs:
        by_label[group_label(job.params)].append(job)
    return [
        Group(label, dict(js[0].params), js, _shared_choices(js)) for label, js in by_label.items()
    ]


def group_label(params: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(params.items())) or "default"


def _shared_choices(jobs: Sequence[Job]) -> dict[str, str]:
    all_choices = [
        j.summary.get("choices") for j in jobs if isinstance(j.summary.get("choices"), dict)
    ]
    if not all_choices:
        return {}
    first = all_choices[0]
    return {k: str(v) for k, v in first.items() if all(c.get(k) == v for c in all_choices)}


def read_experiment(job_dirs: Sequence[Path]) -> dict[str, Any]:
    """The `experiment` node of the first job config that has one ({} when none)."""
    for job_dir in job_dirs:
        cfg = _read_yaml(job_dir / ".hydra" / "config.yaml")
        if isinstance(cfg, dict) and isinstance(cfg.get("experiment"), dict):
            return cfg["experiment"]
    return {}


def rank_groups(groups: Sequence[Group], metric: str, descending: bool) -> list[Group]:
    """Best first; a group where some seed never reached the target ranks below every group that
    always did (never = +inf), then by its share of "never"; groups without values last."""

    def key(g: Group) -> tuple:
        st = g.stat(metric)
        if st.n == 0:
            return (2, 0.0, 0.0)
        mean = st.mean if st.finite else 0.0
        return (int(st.never > 0), st.never / st.n, -mean if descending else mean)

    return sorted(groups, key=key)


# ---------------------------------------------------------------- compare


def load_sweep(sweep_dir: str | Path) -> tuple[list[Job], dict[str, Any]]:
    """(every job below sweep_dir, the experiment node); ConfigError for a missing or empty dir."""
    sweep = Path(sweep_dir)
    if not sweep.is_dir():
        raise ConfigError(f"trainlab compare: no such directory: {sweep}")
    job_dirs = find_job_dirs(sweep)
    if not job_dirs:
        raise ConfigError(
            f"trainlab compare: no job directories (.hydra/overrides.yaml) under {sweep}"
        )
    ignored = ignored_keys(job_dirs)
    return [load_job(d, ignored) for d in job_dirs], read_experiment(job_dirs)


def rank_setting(experiment: dict[str, Any]) -> tuple[str, bool]:
    """(experiment.rank_by, default val_acc; whether higher is better)."""
    rank_by = str(experiment.get("rank_by") or "val_acc")
    order = experiment.get("rank_order")
    return rank_by, (order == "descending" if order else not lower_is_better(rank_by))


def compare(sweep_dir: str | Path) -> Comparison:
    """Read, group, rank, judge the claims; write the table, CSV, claims, plots and TB runs."""
    sweep = Path(sweep_dir)
    jobs, experiment = load_sweep(sweep)
    rank_by, descending = rank_setting(experiment)
    groups = rank_groups(group_jobs(jobs), rank_by, descending)
    ensemble_rows = ensembles.annotate(groups)  # before the claims: ensemble_gain per job
    claims = evaluate_claims(experiment.get("claims") or [], groups)
    result = Comparison(sweep, groups, experiment, rank_by, descending, claims)
    result.ensembles = ensemble_rows
    write_outputs(result)
    return result


def run_compare(sweep_dir: str) -> int:
    """CLI entry: compare, print the table and claims; exit code 2 for a missing or empty dir."""
    try:
        result = compare(sweep_dir)
    except ConfigError as err:
        print(str(err), file=sys.stderr)
        return 2
    print(format_terminal(result))
    return 0


def write_outputs(result: Comparison) -> None:
    """Plots and TensorBoard runs first: comparison.md lists the PNGs that exist."""
    sweep = result.sweep_dir
    result.files += write_plots(result, sweep / "plots")
    result.files += write_tensorboard(result, sweep / "_compare")
    (sweep / "comparison.md").write_text(format_markdown(result))
    (sweep / "comparison.csv").write_text(format_csv(result))
    claims = [c.to_dict() for c in result.claims]
    (sweep / "claims.json").write_text(json.dumps(claims, indent=2, allow_nan=False) + "\n")
    result.files += [sweep / "comparison.md", sweep / "comparison.csv", sweep / "claims.json"]


# ---------------------------------------------------------------- tables


def _headers(result: Comparison) -> list[str]:
    targets = {j.summary.get("target_train_error") for j in result.jobs if j.measured}
    target = (
        f" (train error <= {targets.pop()})" if len(targets) == 1 and None not in targets else ""
    )
    names = {
        "steps_to_target": f"steps to target{target}",
        "seconds_to_target": "seconds to target",
    }
    return ["rank", "group", "n"] + [names.get(m, m) for m in TABLE_METRICS] + list(PROBLEMS)


def _rows(result: Comparison, interval: bool) -> list[list[str]]:
    rows = []
    for rank, g in enumerate(result.groups, 1):
        cells = [fmt_stat(g.stat(m), interval) + _shortfall(g, m) for m in TABLE_METRICS]
        rows.append([str(rank), g.label, str(g.n), *cells, *(str(g.count(s)) for s in PROBLEMS)])
    return rows


def _shortfall(g: Group, metric: str) -> str:
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


def _intro(result: Comparison) -> list[str]:
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
    lines.append(
        f"Ranked by mean {result.rank_by} ({better} is better). Cells: mean ± std [95% Student-t interval"
        " of the mean] over seeds; 'k/n never': seeds that never reached the target, left out of the"
        " mean and ranked as +inf; (n=k): only k seeds have that metric."
    )
    return lines


def _claim_lines(
    claims: Sequence[ClaimResult], markdown: bool, where: str = "experiment.claims"
) -> list[str]:
    if not claims:
        return [f"No claims stated ({where} is empty)."]
    if markdown:
        rows = [[c.text, f"**{c.verdict}**", c.detail] for c in claims]
        return [markdown_table(["claim", "verdict", "numbers"], rows)]
    return [f"[{c.verdict.upper()}] {c.text}\n    {c.detail}" for c in claims]


def _problem_lines(result: Comparison) -> list[str]:
    bad = [j for j in result.jobs if j.status != "completed"]
    if not bad:
        return ["None: every job completed."]
    return [f"- {j.status}: `{_rel(j.path, result.sweep_dir)}`: {j.reason}" for j in bad]


def _rel(path: Path, root: Path) -> str:
    return str(path.relative_to(root)) if path != root else "."


def format_markdown(result: Comparison) -> str:
    title = result.experiment.get("name") or result.sweep_dir.name
    parts = [f"# Comparison: {title}", "\n\n".join(_intro(result))]
    parts += ["## Results", markdown_table(_headers(result), _rows(result, interval=True))]
    if result.ensembles:
        parts += [
            "## Ensembles",
            ensembles.METHOD,
            markdown_table(*ensembles.table(result.ensembles)),
        ]
    parts += ["## Claims", *_claim_lines(result.claims, markdown=True)]
    parts += ["## Failed, diverged and missing jobs", "\n".join(_problem_lines(result))]
    plots = [p for p in result.files if p.suffix == ".png"]
    if plots:
        parts += ["## Plots", "\n".join(f"![{p.stem}]({_rel(p, result.sweep_dir)})" for p in plots)]
    return "\n\n".join(parts) + "\n"


def format_terminal(result: Comparison) -> str:
    parts = [*_intro(result), "", text_table(_headers(result), _rows(result, interval=False))]
    if result.ensembles:
        parts += [
            "",
            "Ensembles of each group's seeds:",
            text_table(*ensembles.table(result.ensembles)),
        ]
    parts += ["", "Claims:", *_claim_lines(result.claims, markdown=False)]
    if any(j.status != "completed" for j in result.jobs):
        parts += ["", "Failed, diverged and missing jobs:", *_problem_lines(result)]
    parts += [
        "",
        f"Wrote {result.sweep_dir / 'comparison.md'} (and .csv, claims.json, plots/, _compare/)",
    ]
    return "\n".join(parts)


def format_csv(result: Comparison) -> str:
    keys = sorted({k for g in result.groups for k in g.params})
    cols = ["rank", "group", *keys, "n", *PROBLEMS]
    for m in TABLE_METRICS:
        cols += [f"{m}_{s}" for s in CSV_STATS]
    out = io.StringIO()
    writer = csv.DictWriter(out, cols, lineterminator="\n")
    writer.writeheader()
    for rank, g in enumerate(result.groups, 1):
        row: dict[str, Any] = {"rank": rank, "group": g.label, **g.params, "n": g.n}
        row |= {s: g.count(s) for s in PROBLEMS}
        for m in TABLE_METRICS:
            st = g.stat(m)
            vals = (st.n, st.mean, st.std, st.lo, st.hi, st.never)
            row |= {f"{m}_{s}": _csv_num(v) for s, v in zip(CSV_STATS, vals, strict=True)}
        writer.writerow(row)
    return out.getvalue()


def _csv_num(x: float | int) -> str:
    return (
        ""
        if isinstance(x, float) and math.isnan(x)
        else repr(x)
        if isinstance(x, float)
        else str(x)
    )


# ---------------------------------------------------------------- curves


def mean_curves(group: Group) -> dict[str, list[tuple[int, int, float, float, int]]]:
    """Per tag: (epoch, step, mean, std, n) over the group's jobs that logged that epoch."""
    per_epoch: dict[str, dict[int, list[tuple[int, float]]]] = {
        k: defaultdict(list) for k in CURVE_TAGS
    }
    for job in group.jobs:
        for rec in (job.history or {}).get("epochs") or []:
            for key in CURVE_TAGS:
                value = rec.get(key)
                if isinstance(value, (int, float)) and math.isfinite(value) and "epoch" in rec:
                    per_epoch[key][int(rec["epoch"])].append(
                        (int(rec.get("step", rec["epoch"])), float(value))
                    )
    return {
        key: [_point(e, pts) for e, pts in sorted(by_epoch.items())]
        for key, by_epoch in per_epoch.items()
    }


def _point(epoch: int, pts: list[tuple[int, float]]) -> tuple[int, int, float, float, int]:
    steps = sorted(s for s, _ in pts)
    vals = [v for _, v in pts]
    mean = math.fsum(vals) / len(vals)
    std = (
        math.sqrt(math.fsum((v - mean) ** 2 for v in vals) / (len(vals) - 1))
        if len(vals) > 1
        else 0.0
    )
    return epoch, steps[len(steps) // 2], mean, std, len(vals)


def write_tensorboard(result: Comparison, root: Path) -> list[Path]:
    """Each group's mean and mean ± std epoch curves as TensorBoard runs, at the jobs' step axis."""
    from torch.utils.tensorboard import SummaryWriter  # slow import: only when writing

    shutil.rmtree(root, ignore_errors=True)  # a rerun replaces, never duplicates
    written = []
    for g in result.groups:
        curves = mean_curves(g)
        if not any(curves.values()):
            continue
        for run, sign in (("mean", 0), ("mean+std", 1), ("mean-std", -1)):
            run_dir = root / _safe(g.label) / run
            with SummaryWriter(log_dir=str(run_dir)) as writer:
                for key, points in curves.items():
                    for _, step, mean, std, _ in points:
                        writer.add_scalar(CURVE_TAGS[key], mean + sign * std, global_step=step)
            written.append(run_dir)
    return written


def _safe(label: str) -> str:
    return label.replace("/", "-").replace("\\", "-")


# ---------------------------------------------------------------- plots


def write_plots(result: Comparison, plot_dir: Path) -> list[Path]:
    plot_dir.mkdir(parents=True, exist_ok=True)
    for old in plot_dir.glob("*.png"):
        old.unlink()
    written = [p for key in PLOT_CURVES if (p := plot_curves(result, key, plot_dir))]
    for key in numeric_swept_keys(result.groups):
        written.append(plot_vs_param(result, key, plot_dir))
    return written


def _figure():
    from matplotlib.figure import Figure  # no pyplot: no global state, Agg when saving

    fig = Figure(figsize=(8, 5), layout="constrained")
    return fig, fig.add_subplot()


def _colors(n: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def plot_curves(result: Comparison, key: str, plot_dir: Path) -> Path | None:
    """Mean ± std (shaded) of one history key against the epoch, one line per group."""
    fig, ax = _figure()
    drawn = 0
    for g, color in zip(result.groups, _colors(len(result.groups)), strict=True):
        points = mean_curves(g)[key]
        if not points:
            continue
        epochs, _, mean, std, n = zip(*points, strict=True)
        lo, hi = (
            [m - s for m, s in zip(mean, std, strict=True)],
            [m + s for m, s in zip(mean, std, strict=True)],
        )
        ax.plot(epochs, mean, color=color, label=f"{_legend_label(g, result.groups)} (n={max(n)})")
        ax.fill_between(epochs, lo, hi, color=color, alpha=0.2, linewidth=0)
        drawn += 1
    if not drawn:
        return None
    ax.set(xlabel="epoch", ylabel=key, title=f"{key}: mean ± std over seeds")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    _legend(fig, ax, drawn)
    return _save(fig, plot_dir / f"curves_{key}.png")


def _legend(fig, ax, entries: int) -> None:
    """In the axes for a few lines; beside them, on a wider figure, for many."""
    if entries > 6:
        fig.set_size_inches(13, 6)
        fig.legend(fontsize="small", loc="outside right upper")
    else:
        ax.legend(fontsize="small")


def _legend_label(group: Group, groups: Sequence[Group]) -> str:
    """The group's label without the overrides every group shares."""
    common = {k: v for k, v in group.params.items() if all(g.params.get(k) == v for g in groups)}
    rest = {k: v for k, v in group.params.items() if k not in common}
    return group_label(rest) if rest else group.label


def _save(fig, path: Path) -> Path:
    fig.savefig(path, dpi=100)
    return path


def numeric_swept_keys(groups: Sequence[Group]) -> list[str]:
    """Override keys whose values are all numbers and take at least two values across groups."""
    values: dict[str, set[str]] = defaultdict(set)
    for g in groups:
        for k, v in g.params.items():
            values[k].add(v)
    return sorted(k for k, vs in values.items() if len(vs) >= 2 and all(_is_number(v) for v in vs))


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def is_log_spaced(values: Sequence[float]) -> bool:
    """All > 0 and either spanning >= 100x, or (3+ values) with a roughly constant ratio >= 1.5."""
    vs = sorted(set(values))
    if len(vs) < 2 or vs[0] <= 0:
        return False
    if vs[-1] / vs[0] >= 100:
        return True
    ratios = [b / a for a, b in pairwise(vs)]
    return len(vs) >= 3 and min(ratios) >= 1.5 and max(ratios) / min(ratios) < 1.25


def plot_vs_param(result: Comparison, key: str, plot_dir: Path) -> Path:
    """The ranking metric (mean ± std) against one numeric override, one line per value of the
    other overrides; a scatter when no line has two points (e.g. random search)."""
    metric = result.rank_by
    lines: dict[str, list[tuple[float, float, float]]] = defaultdict(list)
    for g in result.groups:
        st = g.stat(metric)
        if key in g.params and st.finite:
            others = {k: v for k, v in g.params.items() if k != key}
            std = st.std if math.isfinite(st.std) else 0.0
            lines[group_label(others) if others else "all"].append(
                (float(g.params[key]), st.mean, std)
            )
    fig, ax = _figure()
    scatter = all(len(pts) < 2 for pts in lines.values())
    for (label, pts), color in zip(sorted(lines.items()), _colors(len(lines)), strict=True):
        x, y, err = zip(*sorted(pts), strict=True)
        style = (
            {"color": "C0", "fmt": "o"}
            if scatter
            else {"color": color, "fmt": "o-", "label": label}
        )
        ax.errorbar(x, y, yerr=err, capsize=3, **style)
    xs = [x for pts in lines.values() for x, _, _ in pts]
    if xs and is_log_spaced(xs):
        ax.set_xscale("log")
    ax.set(xlabel=key, ylabel=f"{metric} (mean ± std over seeds)", title=f"{metric} vs {key}")
    ax.grid(alpha=0.3)
    if not scatter and len(lines) > 1:
        _legend(fig, ax, len(lines))
    return _save(fig, plot_dir / f"{metric}_vs_{_safe(key)}.png")


# ---------------------------------------------------------------- several sweeps: searches
#
# `trainlab compare SWEEP_A SWEEP_B ...`: each sweep is a hyperparameter search. For each seed,
# the search's result is its best completed job by the ranking metric (selected on validation,
# as a search would); the searches are compared over those per-seed bests, and judged by the
# `experiment.cross_sweep_claims` of their experiments (schema and verdicts: claims.py).

SEARCH_FILES = ("comparison.md", "comparison.csv", "claims.json")
CROSS = "every experiment's cross_sweep_claims"


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
    return [best[seed][1] for seed in sorted(best, key=_seed_key)]


def _seed_key(seed: str | None) -> tuple:
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


def compare_searches(
    sweep_dirs: Sequence[str | Path], out_dir: str | Path | None = None
) -> SearchComparison:
    """Compare several sweeps as searches; write comparison.md/.csv and claims.json into
    out_dir (default: a folder named after the searches inside the first sweep)."""
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
        group = Group(label, {"search": label}, best, _shared_choices(best))
        searches.append(Search(label, path, exp, jobs, group))
    ranked = rank_groups([s.best for s in searches], rank_by, descending)
    searches.sort(key=lambda s: next(i for i, g in enumerate(ranked) if g is s.best))
    claims = evaluate_claims(cross_sweep_claims(experiments), ranked)
    out = Path(out_dir) if out_dir else sweeps[0] / _safe("_vs_".join(labels))
    result = SearchComparison(searches, out, rank_by, descending, claims, notes)
    write_search_outputs(result)
    return result


def run_compare_searches(sweep_dirs: Sequence[str], out_dir: str | None = None) -> int:
    """CLI entry for several sweeps; exit code 2 for a missing or empty dir."""
    try:
        result = compare_searches(sweep_dirs, out_dir)
    except ConfigError as err:
        print(str(err), file=sys.stderr)
        return 2
    print(format_search_terminal(result))
    return 0


def compare_main(args: Sequence[str]) -> int:
    """`trainlab compare SWEEP_DIR` or `trainlab compare SWEEP_A SWEEP_B ... [--out DIR]`."""
    usage = "usage: trainlab compare SWEEP_DIR | trainlab compare SWEEP_A SWEEP_B ... [--out DIR]"
    dirs, out, rest = [], None, list(args)
    while rest:
        arg = rest.pop(0)
        if arg == "--out" and rest and out is None:
            out = rest.pop(0)
        elif arg.startswith("--out=") and out is None:
            out = arg.removeprefix("--out=")
        elif arg.startswith("-"):
            dirs = []
            break
        else:
            dirs.append(arg)
    if not dirs or (len(dirs) == 1 and out is not None):
        print(usage, file=sys.stderr)
        return 2
    return run_compare(dirs[0]) if len(dirs) == 1 else run_compare_searches(dirs, out)


def write_search_outputs(result: SearchComparison) -> None:
    out = result.out_dir
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"trainlab compare: cannot write into {out}: {err.strerror}") from err
    texts = (
        format_search_markdown(result),
        format_search_csv(result),
        json.dumps([c.to_dict() for c in result.claims], indent=2, allow_nan=False) + "\n",
    )
    for name, text in zip(SEARCH_FILES, texts, strict=True):
        (out / name).write_text(text)
        result.files.append(out / name)


def _short_params(params: dict[str, str]) -> str:
    """'optimizer.lr=0.00316,regularizer.weight_decay=2.15e-05': numbers to 3 digits."""
    cells = [f"{k}={f'{float(v):.3g}' if _is_number(v) else v}" for k, v in sorted(params.items())]
    return ",".join(cells) or "default"


def _best_cell(search: Search, metric: str, descending: bool) -> str:
    """The best configuration over all seeds, with its value and seed."""
    if not search.best.jobs:
        return "–"
    values = [(metric_value(j.summary, metric), j) for j in search.best.jobs]
    value, job = (max if descending else min)(values, key=lambda vj: vj[0])
    return f"{_short_params(job.params)} ({metric} {fmt_num(value)}, seed {job.seed})"


def _search_headers(result: SearchComparison) -> list[str]:
    stats = [f"{result.rank_by} (best per seed)"]
    stats += [f"{m} (of that job)" for m in result.metrics[1:]]
    return ["rank", "search", "jobs", "seeds", *stats, "best configuration", *PROBLEMS]


def _search_rows(result: SearchComparison, interval: bool) -> list[list[str]]:
    rows = []
    for rank, s in enumerate(result.searches, 1):
        cells = [fmt_stat(s.best.stat(m), interval) + _shortfall(s.best, m) for m in result.metrics]
        best = _best_cell(s, result.rank_by, result.descending)
        counts = [str(s.count(p)) for p in PROBLEMS]
        rows.append([str(rank), s.label, str(len(s.jobs)), str(s.best.n), *cells, best, *counts])
    return rows


def _seed_rows(result: SearchComparison) -> list[list[str]]:
    rows = []
    for s in result.searches:
        chosen = {j.seed: j for j in s.best.jobs}
        for seed in sorted({j.seed for j in s.jobs}, key=_seed_key):
            job = chosen.get(seed)
            cells = [
                fmt_num(v) if job and (v := metric_value(job.summary, m)) is not None else "–"
                for m in result.metrics
            ]
            config = _short_params(job.params) if job else "no completed job"
            rows.append([s.label, str(seed), str(s.trials(seed)), *cells, config])
    return rows


def _seed_headers(result: SearchComparison) -> list[str]:
    return ["search", "seed", "jobs", *result.metrics, "configuration chosen"]


def _search_intro(result: SearchComparison) -> list[str]:
    lines = [f"Search {s.label}: {len(s.jobs)} jobs in {s.sweep_dir}" for s in result.searches]
    better = "higher" if result.descending else "lower"
    lines.append(
        f"Per seed, each search's result is its best completed job by {result.rank_by} ({better}"
        " is better): the configuration that search found with that seed. Cells: mean ± std"
        " [95% Student-t interval of the mean] over seeds of those per-seed bests."
    )
    return lines + result.notes


def _search_problem_lines(result: SearchComparison) -> list[str]:
    bad = [(s, j) for s in result.searches for j in s.jobs if j.status != "completed"]
    if not bad:
        return ["None: every job completed."]
    return [f"- {s.label} {j.status}: `{_rel(j.path, s.sweep_dir)}`: {j.reason}" for s, j in bad]


def format_search_markdown(result: SearchComparison) -> str:
    title = " vs ".join(s.label for s in result.searches)
    parts = [f"# Comparison of searches: {title}", "\n\n".join(_search_intro(result))]
    parts += ["## Results", markdown_table(_search_headers(result), _search_rows(result, True))]
    parts += ["## Per seed", markdown_table(_seed_headers(result), _seed_rows(result))]
    parts += ["## Claims", *_claim_lines(result.claims, True, CROSS)]
    parts += ["## Failed, diverged and missing jobs", "\n".join(_search_problem_lines(result))]
    return "\n\n".join(parts) + "\n"


def format_search_terminal(result: SearchComparison) -> str:
    parts = [*_search_intro(result), ""]
    parts += [text_table(_search_headers(result), _search_rows(result, interval=True)), ""]
    parts += ["Per seed:", text_table(_seed_headers(result), _seed_rows(result))]
    parts += ["", "Claims:", *_claim_lines(result.claims, False, CROSS)]
    if any(j.status != "completed" for s in result.searches for j in s.jobs):
        parts += ["", "Failed, diverged and missing jobs:", *_search_problem_lines(result)]
    parts += ["", f"Wrote {result.out_dir / 'comparison.md'} (and comparison.csv, claims.json)"]
    return "\n".join(parts)


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
            row |= {f"{m}_{k}": _csv_num(v) for k, v in zip(CSV_STATS, vals, strict=True)}
        writer.writerow(row)
    return out.getvalue()
