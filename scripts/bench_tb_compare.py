"""Compare's TensorBoard runs, before and after one run per group: the old writer (a mean, a
mean+std and a mean-std run per group, read from git at --old-rev) and today's (one run per
group with its bounds, and the margin-chart layout), interleaved in one process on one sweep.
Usage:

    python scripts/bench_tb_compare.py SWEEP_DIR [--repeats 15] [--old-rev 1681737]
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from trainlab.report.tensorboard import write_tensorboard
from trainlab.sweep import Comparison, group_jobs, load_sweep

ROOT = Path(__file__).resolve().parents[1]


def old_writer(rev: str, tmp: Path):
    source = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{rev}:trainlab/report/tensorboard.py"],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    (tmp / "old_tb.py").write_text(source)
    spec = importlib.util.spec_from_file_location("old_tb", tmp / "old_tb.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.write_tensorboard


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("sweep")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--old-rev", default="1681737")
    args = parser.parse_args()
    jobs, experiment = load_sweep(Path(args.sweep))
    result = Comparison(Path(args.sweep), group_jobs(jobs), experiment, "val_acc", True, [])
    with tempfile.TemporaryDirectory() as tmp:
        writers = {"3 runs per group": old_writer(args.old_rev, Path(tmp)),
                   "1 run per group": write_tensorboard}  # fmt: skip
        times: dict[str, list[float]] = {name: [] for name in writers}
        for _ in range(args.repeats + 1):  # the first round warms up
            for name, write in writers.items():
                tick = time.perf_counter()
                write(result, Path(tmp) / name.replace(" ", "_"))
                times[name].append(time.perf_counter() - tick)
    for name, t in times.items():
        print(f"{name}: median {1000 * statistics.median(t[1:]):.1f} ms "
              f"({len(result.groups)} groups, {args.repeats} runs)")  # fmt: skip


if __name__ == "__main__":
    main()
