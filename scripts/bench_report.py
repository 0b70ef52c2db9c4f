"""What compare's outputs cost on one sweep: reading and judging, the plots, the TensorBoard
runs, the text files, report.html; and `trainlab report` (the index) over the sweep's parent.

The sweep is copied into a temporary folder first (the original is not written to). Each part
is timed `--repeats` times in this process (imports paid before the first timing) and the
median printed, with the size of report.html and the number of plots. Usage:

    python scripts/bench_report.py SWEEP_DIR [--repeats 5]

"plots, constrained layout" draws the same plots with matplotlib's constrained layout engine,
which compare used before (fixed margins now), interleaved with the other parts.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
import warnings
from pathlib import Path

from trainlab import compare as cmp
from trainlab.report.html import write_report
from trainlab.report.index import write_index
from trainlab.report.plots import Painter, write_plots
from trainlab.report.tables import format_csv, format_markdown
from trainlab.report.tensorboard import write_tensorboard


def timed(fn) -> tuple[float, float]:
    """(wall, CPU) seconds of fn(): the CPU time is what load from other processes disturbs least."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep", type=Path)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        sweep = Path(tmp) / "sweeps" / args.sweep.name
        shutil.copytree(args.sweep, sweep, symlinks=True)
        for name in ("report.html", "index.html"):
            (sweep / name).unlink(missing_ok=True)
        result = cmp.compare(sweep)  # warm-up: imports, the file cache
        parts = {
            "read + judge (no outputs)": lambda: judge(sweep),
            "plots": lambda: write_plots(result, sweep / "plots"),
            "plots, constrained layout": lambda: constrained(result, Path(tmp) / "plots"),
            "TensorBoard runs": lambda: write_tensorboard(result, sweep / "_compare"),
            "comparison.md + .csv": lambda: (format_markdown(result), format_csv(result)),
            "report.html": lambda: write_report(result, sorted((sweep / "plots").glob("*.png"))),
            "trainlab report (index, no compare)": lambda: write_index(sweep.parent, False),
        }
        times = {name: [] for name in parts}
        for _ in range(args.repeats):
            for name, fn in parts.items():
                times[name].append(timed(fn))
        jobs, plots = len(result.jobs), len(list((sweep / "plots").glob("*.png")))
        size = (sweep / "report.html").stat().st_size
        print(f"sweep {args.sweep} ({jobs} jobs, {len(result.groups)} groups, {plots} plots);"
              f" median of {args.repeats}; load average {os.getloadavg()[0]:.1f}")  # fmt: skip
        print(f"  {'':38s} {'wall':>8s} {'CPU':>8s}")
        for name, ts in times.items():
            wall, cpu = (statistics.median(t[i] for t in ts) for i in (0, 1))
            print(f"  {name:38s} {wall:6.3f} s {cpu:6.3f} s")
        print(f"  report.html: {size / 1024:.0f} KiB, self-contained")


def constrained(result, plot_dir: Path):
    """write_plots with matplotlib's constrained layout engine instead of fixed margins."""
    fixed = Painter.figure

    def figure(self):
        fig = self.Figure(figsize=(8, 5), layout="constrained")
        return fig, fig.add_subplot()

    Painter.figure = figure
    warnings.filterwarnings("ignore", "This figure was using a layout engine")
    try:
        return write_plots(result, plot_dir)
    finally:
        Painter.figure = fixed


def judge(sweep: Path):
    """compare's reading, grouping and claims without writing anything."""
    from trainlab import ensembles
    from trainlab.claims import evaluate_claims
    from trainlab.sweep import group_jobs, load_sweep, rank_groups, rank_setting

    jobs, experiment = load_sweep(sweep)
    rank_by, descending = rank_setting(experiment)
    groups = rank_groups(group_jobs(jobs), rank_by, descending)
    ensembles.annotate(groups)
    return evaluate_claims(experiment.get("claims") or [], groups)


if __name__ == "__main__":
    main()
