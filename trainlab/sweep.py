"""Reading a sweep from plain files: jobs, groups over seeds, ranking, mean curves.

Statistics are over a group's *measured* jobs: status completed or diverged (a diverged run is
a result). Failed jobs (an exception: a bug, not a measurement) and jobs with no readable
summary.json (killed) are counted and listed, never averaged. A metric a job lacks (absent, null,
NaN) is left out of that metric only. A diverged job is scored as the worst case of what it
could not measure (scores.py: chance accuracy, +inf loss); a null `steps_to_target` is "never
reached": reported as "k/n never", left out of the mean, and ranked as +inf.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from trainlab.claims import ClaimResult, Stat, describe, lower_is_better
from trainlab.errors import ConfigError
from trainlab.runs import is_running
from trainlab.scores import job_value, metric_range
from trainlab.sweep_record import read_record

CURVE_TAGS = {
    "val_acc": "val/acc",
    "val_loss": "val/loss",
    "train_loss": "train/loss",
    "train_acc": "train/acc",
}


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
        """Every measured job's value; a diverged job scores the worst case (scores.py)."""
        return [job_value(j.summary, metric) for j in self.jobs if j.measured]

    def stat(self, metric: str) -> Stat:
        return describe(self.values(metric), metric_range(metric))

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
    out_dir: Path | None = None  # where compare writes (None: the sweep's directory)
    ensembles: list[Any] = field(default_factory=list)  # ensembles.EnsembleRow: group x split

    @property
    def jobs(self) -> list[Job]:
        return [j for g in self.groups for j in g.jobs]

    @property
    def out(self) -> Path:
        return self.out_dir or self.sweep_dir


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


SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's: ~15x faster


def _read_yaml(path: Path) -> Any:
    """Every job's config.yaml is read (its experiment): the C loader when PyYAML has it."""
    try:
        return yaml.load(path.read_text(), Loader=SAFE_LOADER)
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
    if job.status == "interrupted":
        job.status = "missing"
        return f"interrupted: {s.get('error', '')} (re-run the sweep command to resume)"
    if job.status == "running" and not is_running(job.path):
        job.status = "missing"
        return "killed: its summary says running but no process holds it (re-run the sweep command to resume)"
    if job.status != "completed":
        job.status = "missing"
        return f"incomplete summary.json (status {s.get('status')!r})"
    return ""


def never_started(sweep: Path, found: Sequence[Path], ignored: set[str]) -> list[Job]:
    """The jobs of the sweep's record (sweep.json) that have no directory: never started."""
    record = read_record(sweep) or {}
    started = {
        frozenset(map(str, _read_yaml(d / ".hydra" / "overrides.yaml") or [])) for d in found
    }
    jobs = []
    for overrides in record.get("jobs") or []:
        if frozenset(overrides) not in started:
            params, seed = split_overrides(overrides, ignored)
            jobs.append(Job(sweep, params, seed, "missing", reason="never started"))
    return jobs


def group_jobs(jobs: Sequence[Job]) -> list[Group]:
    """Jobs with the same overrides but the seed form a group, labelled by the overrides that
    differ between groups (an override every job shares is no part of a label)."""
    by_label: dict[str, list[Job]] = defaultdict(list)
    for job in jobs:
        by_label[group_label(job.params)].append(job)
    params = [js[0].params for js in by_label.values()]
    swept = {k for p in params for k, v in p.items() if any(q.get(k) != v for q in params)}
    return [
        Group(group_label({k: v for k, v in js[0].params.items() if k in swept}) if swept else label,
              dict(js[0].params), js, shared_choices(js))
        for label, js in by_label.items()
    ]  # fmt: skip


def group_label(params: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(params.items())) or "default"


def shared_choices(jobs: Sequence[Job]) -> dict[str, str]:
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


def load_sweep(sweep_dir: str | Path) -> tuple[list[Job], dict[str, Any]]:
    """(every job below sweep_dir, the experiment node); ConfigError for a missing or empty dir."""
    sweep = Path(sweep_dir)
    if not sweep.is_dir():
        raise ConfigError(f"trainlab compare: no such directory: {sweep}")
    job_dirs = find_job_dirs(sweep)
    if not job_dirs and not (read_record(sweep) or {}).get("jobs"):
        raise ConfigError(
            f"trainlab compare: no job directories (.hydra/overrides.yaml) under {sweep}"
        )
    check_one_sweep(sweep, job_dirs)
    ignored = ignored_keys(job_dirs)
    jobs = [load_job(d, ignored) for d in job_dirs] + never_started(sweep, job_dirs, ignored)
    return jobs, read_experiment(job_dirs)


def check_one_sweep(root: Path, job_dirs: Sequence[Path]) -> None:
    """ConfigError unless the jobs form one sweep: one multirun.yaml above them all (or none,
    for hand-made directories) and one experiment. Pooling unrelated sweeps judges nothing."""
    sweeps = sorted({_sweep_root(root, d) or root for d in job_dirs})
    if len(sweeps) > 1:
        shown = ", ".join(str(s.relative_to(root)) if s != root else "." for s in sweeps[:3])
        raise ConfigError(
            f"trainlab compare: {root} holds the jobs of {len(sweeps)} sweeps ({shown}"
            f"{', ...' if len(sweeps) > 3 else ''}): give one sweep's directory"
        )
    names = sorted({n for d in job_dirs if (n := _experiment_name(d)) is not None})
    if len(names) > 1:
        raise ConfigError(
            f"trainlab compare: {root} holds the jobs of {len(names)} experiments "
            f"({', '.join(names[:3])}): give one sweep's directory"
        )


def _sweep_root(root: Path, job_dir: Path) -> Path | None:
    """The directory between job_dir and root that holds Hydra's multirun.yaml, if any."""
    for d in (job_dir, *job_dir.parents):
        if (d / "multirun.yaml").is_file():
            return d
        if d == root:
            return None
    return None


def _experiment_name(job_dir: Path) -> str | None:
    cfg = _read_yaml(job_dir / ".hydra" / "config.yaml")
    exp = cfg.get("experiment") if isinstance(cfg, dict) else None
    return exp.get("name") if isinstance(exp, dict) else None


def rank_setting(experiment: dict[str, Any]) -> tuple[str, bool]:
    """(experiment.rank_by, default val_acc; whether higher is better)."""
    rank_by = str(experiment.get("rank_by") or "val_acc")
    order = experiment.get("rank_order")
    return rank_by, (order == "descending" if order else not lower_is_better(rank_by))


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


def numeric_swept_keys(groups: Sequence[Group]) -> list[str]:
    """Override keys whose values are all numbers and take at least two values across groups."""
    values: dict[str, set[str]] = defaultdict(set)
    for g in groups:
        for k, v in g.params.items():
            values[k].add(v)
    return sorted(k for k, vs in values.items() if len(vs) >= 2 and all(is_number(v) for v in vs))


def is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def safe_name(label: str) -> str:
    return label.replace("/", "-").replace("\\", "-")
