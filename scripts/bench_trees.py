"""One sweep run with trainlab from two source trees, interleaved: what a change saves.

    python scripts/bench_trees.py OLD NEW [--repeats 4] -- +experiment=babysitting

OLD and NEW are source trees of this repository (e.g. `git worktree add /tmp/old COMMIT`);
each run is `python -m trainlab train -m OVERRIDES` with PYTHONPATH set to the tree, the
order alternating between repeats. Prints per tree the median sweep wall time and the median
(wall - the jobs' own train_time_s + eval_time_s) / jobs, the median paired difference, and
the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_sweep import own_seconds  # this script's folder is on sys.path


def sweep(tree: str, overrides: list[str], sweep_dir: Path) -> tuple[float, float, int]:
    """(wall seconds, the jobs' own seconds, jobs)."""
    cmd = [sys.executable, "-m", "trainlab", "train", "-m", *overrides,
           "trainer.progress=never", f"hydra.sweep.dir={sweep_dir}"]  # fmt: skip
    start = time.perf_counter()
    subprocess.run(cmd, check=True, env={**os.environ, "PYTHONPATH": tree},
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    wall = time.perf_counter() - start
    summaries = [json.loads(p.read_text()) for p in sweep_dir.rglob("summary.json")]
    return wall, sum(own_seconds(s) for s in summaries), len(summaries)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old")
    parser.add_argument("new")
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("overrides", nargs="+")
    args = parser.parse_args()
    trees = {"old": args.old, "new": args.new}
    rows: dict[str, list[tuple[float, float, int]]] = {k: [] for k in trees}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            for kind in ("old", "new") if r % 2 == 0 else ("new", "old"):
                rows[kind].append(sweep(trees[kind], args.overrides, Path(tmp) / f"{kind}{r}"))
    print(f"{' '.join(args.overrides)}; {args.repeats} repeats (medians); "
          f"load average {os.getloadavg()[0]:.2f}")  # fmt: skip
    for kind, runs in rows.items():
        wall = statistics.median(w for w, _, _ in runs)
        rest = statistics.median((w - own) / n for w, own, n in runs)
        print(f"{kind}: {runs[0][2]} jobs, sweep wall {wall:.2f} s, "
              f"(wall - jobs' own train+eval) / jobs {rest:.3f} s")  # fmt: skip
    saved = statistics.median(o[0] - n[0] for o, n in zip(rows["old"], rows["new"], strict=True))
    print(f"old - new: {saved:.2f} s a sweep, {saved / rows['old'][0][2]:.3f} s a job")


if __name__ == "__main__":
    main()
