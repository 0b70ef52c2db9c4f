"""`trainlab report [DIR]`: index.html, one page linking every sweep's report.html under DIR.

A sweep is a folder holding Hydra's multirun.yaml (or a report.html). Each row: the experiment,
the date, the jobs by status, the verdicts by kind (from claims.json), and a link to the report.
A sweep without report.html is compared now when that is cheap and safe: at most REBUILD_JOBS
jobs, every job finished (none running, killed or never started), nothing written in the last
QUIET_S seconds, and the folder writable. Otherwise it is listed as not compared, with why.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from trainlab.errors import ConfigError
from trainlab.io import atomic_write_text
from trainlab.report.html import environment, job_counts, now, problem_kind, verdict_counts

REBUILD_JOBS = 200  # compare takes about a second per 50 jobs (plots, TensorBoard runs)
QUIET_S = 120  # a sweep written to this recently may still be running
UNFINISHED = ("killed", "interrupted", "never started", "missing")


@dataclass
class Entry:
    path: Path
    experiment: str = ""
    date: str = ""
    jobs: dict[str, int] = field(default_factory=dict)
    verdicts: dict[str, int] | None = None  # None: no claims.json
    report: str | None = None  # href of report.html, relative to the index
    note: str = ""  # 'compared now', or why there is no report


def find_sweeps(root: Path) -> list[Path]:
    """Folders holding multirun.yaml or report.html, outermost only (never inside another)."""
    found = {p.parent for name in ("multirun.yaml", "report.html") for p in root.rglob(name)}
    return sorted(p for p in found if not any(q in found for q in p.parents))


def sweep_date(sweep: Path) -> str:
    marker = sweep / "multirun.yaml"
    stamp = (marker if marker.is_file() else sweep).stat().st_mtime
    return datetime.fromtimestamp(stamp, timezone.utc).strftime("%Y-%m-%d %H:%M")


def read_entry(sweep: Path, root: Path, rebuild: bool) -> Entry:
    from trainlab.sweep import load_sweep

    entry = Entry(sweep, date=sweep_date(sweep))
    try:
        jobs, experiment = load_sweep(sweep)
    except ConfigError as err:
        entry.note = f"not compared: {str(err).removeprefix('trainlab compare: ')}"
        return entry
    entry.experiment = str(experiment.get("name") or "")
    entry.jobs = job_counts(jobs)
    report = sweep / "report.html"
    if not report.is_file() and rebuild:
        why = why_not_rebuilt(sweep, [problem_kind(j) for j in jobs])
        entry.note = f"not compared: {why}" if why else compare_now(sweep)
    elif not report.is_file():
        entry.note = "not compared"
    if report.is_file():
        entry.report = os.path.relpath(report, root)
        entry.verdicts = read_verdicts(sweep / "claims.json")
    return entry


def why_not_rebuilt(sweep: Path, kinds: list[str | None]) -> str:
    """'' when comparing this sweep now is cheap and safe, else why not."""
    unfinished = sum(k in UNFINISHED for k in kinds)
    newest = max((p.stat().st_mtime for p in sweep.rglob("summary.json")), default=0.0)
    if len(kinds) > REBUILD_JOBS:
        return f"{len(kinds)} jobs (more than {REBUILD_JOBS}): run trainlab compare {sweep}"
    if unfinished:
        return f"{unfinished} jobs unfinished (running, killed or never started)"
    if time.time() - newest < QUIET_S:
        return f"a job finished less than {QUIET_S} s ago: the sweep may still be running"
    if not os.access(sweep, os.W_OK):
        return "the folder is not writable"
    return ""


def compare_now(sweep: Path) -> str:
    from trainlab.compare import compare

    try:
        compare(sweep)
    except ConfigError as err:
        return f"not compared: {str(err).removeprefix('trainlab compare: ')}"
    return "compared now"


def read_verdicts(path: Path) -> dict[str, int] | None:
    try:
        claims = json.loads(path.read_text())
        return verdict_counts([c for c in claims if isinstance(c, dict) and "verdict" in c])
    except (OSError, ValueError, TypeError):
        return None


def write_index(root: str | Path, rebuild: bool = True) -> tuple[Path, list[Entry]]:
    """Write root/index.html; ConfigError for a missing folder or one without sweeps."""
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(
            f"trainlab report: DIR={root}: no such directory (allowed: a folder of sweeps)"
        )
    sweeps = find_sweeps(root)
    if not sweeps:
        raise ConfigError(
            f"trainlab report: DIR={root}: no sweep below it (a folder with multirun.yaml or report.html)"
        )
    entries = [read_entry(s, root, rebuild) for s in sweeps]
    entries.sort(key=lambda e: e.date, reverse=True)
    html = (
        environment()
        .get_template("index.html.j2")
        .render(
            root=str(root.resolve()),
            written=now(),
            entries=entries,
            rel=lambda p: os.path.relpath(p, root),
        )
    )
    path = root / "index.html"
    try:
        atomic_write_text(path, html)
    except OSError as err:
        raise ConfigError(f"trainlab report: cannot write {path}: {err.strerror}") from err
    return path, entries


def run_report(root: str, rebuild: bool = True) -> int:
    """CLI entry: write the index, say where; exit 2 with one line for a bad DIR."""
    try:
        path, entries = write_index(root, rebuild)
    except ConfigError as err:
        print(str(err), file=sys.stderr)
        return 2
    linked = sum(e.report is not None for e in entries)
    now_ = sum(e.note == "compared now" for e in entries)
    print(
        f"trainlab report: {len(entries)} sweeps, {linked} with a report"
        f" ({now_} compared now), {len(entries) - linked} not compared: {path}"
    )
    return 0
