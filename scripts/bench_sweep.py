"""Per-job overhead of a one-process sweep (issue 11: at most 0.15 s per job on average).

Runs `trainlab train -m activation=relu,tanh seed=0,1,2,3 trainer.epochs=3 [OVERRIDES]`
(the end-of-sweep compare with its plots included) with the launchers named by --launchers
(`separate`: hydra.launcher.fuse=false, jobs one after another; `default`: the default
launcher, which fuses seeds where it can), and `python -c 'import os, trainlab.cli,
trainlab.train; os._exit(0)'` (the imports a sweep pays once, ended as the command ends:
without the interpreter's teardown), interleaved with the order rotating
between repeats. The overhead per job is

    (sweep wall time - import time - the jobs' own training and evaluation) / jobs

where a job's own time is its summary's `train_time_s + eval_time_s` (training steps, and
evaluation: validation, final train/test metrics, predictions); a job trained in a fused
group records its share of the group's (the group's / members), so the figure means the same
for both launchers. Prints medians over the repeats, and the load average.

    python scripts/bench_sweep.py [--repeats 3] [--launchers separate default] [OVERRIDES...]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

from bench_startup import wall  # this script's folder is on sys.path

SWEEP = ["activation=relu,tanh", "seed=0,1,2,3", "trainer.epochs=3"]
LAUNCHERS = {"separate": ["hydra.launcher.fuse=false"], "default": []}


def own_seconds(summary: dict) -> float:
    return summary.get("train_time_s", 0.0) + summary.get("eval_time_s", 0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--launchers", nargs="+", default=list(LAUNCHERS), choices=LAUNCHERS)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    # the imports alone, ended as trainlab's command ends (cli.entry: no interpreter teardown)
    imports = [sys.executable, "-c", "import os, trainlab.cli, trainlab.train; os._exit(0)"]
    kinds = ["imports", *args.launchers]
    times: dict[str, list[float]] = {k: [] for k in kinds}
    rows: dict[str, list[tuple[float, float, int]]] = {k: [] for k in args.launchers}
    with tempfile.TemporaryDirectory() as tmp:
        wall(imports)  # warm-up: file cache
        for r in range(args.repeats):
            for kind in kinds[r % len(kinds) :] + kinds[: r % len(kinds)]:
                if kind == "imports":
                    times[kind].append(wall(imports))
                    continue
                sweep_dir = Path(tmp) / f"{kind}{r}"
                cmd = [sys.executable, "-m", "trainlab", "train", "-m", *SWEEP,
                       *LAUNCHERS[kind], *args.overrides, "trainer.progress=never",
                       f"hydra.sweep.dir={sweep_dir}"]  # fmt: skip
                t = wall(cmd)
                summaries = [json.loads(p.read_text()) for p in sweep_dir.rglob("summary.json")]
                times[kind].append(t)
                rows[kind].append((t, sum(own_seconds(s) for s in summaries), len(summaries)))
    t_import = statistics.median(times["imports"])
    print(f"{' '.join(SWEEP + args.overrides)}; {args.repeats} repeats (medians); "
          f"load average {os.getloadavg()[0]:.2f}")  # fmt: skip
    print(f"imports {t_import:.2f} s")
    for kind in args.launchers:
        per_job = [
            (t - imp - own) / n
            for (t, own, n), imp in zip(rows[kind], times["imports"], strict=True)
        ]
        own = statistics.median(r[1] for r in rows[kind])
        print(
            f"{kind}: {rows[kind][0][2]} jobs, sweep wall {statistics.median(times[kind]):.2f} s, "
            f"jobs' own train+eval {own:.2f} s, overhead per job {statistics.median(per_job):.3f} s"
        )


if __name__ == "__main__":
    main()
