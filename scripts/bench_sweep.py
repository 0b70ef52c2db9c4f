"""Per-job overhead of a one-process sweep (issue 11: at most 0.15 s per job on average).

Runs `trainlab train -m activation=relu,tanh seed=0,1,2,3 trainer.epochs=3 [OVERRIDES]`
(compare at the end included) and, paired with it, `python -c 'import trainlab.cli,
trainlab.train'` (the imports a sweep pays once). The overhead per job is (sweep wall time -
import time - the sum of the jobs' own `wall_time_s`, which counts their training,
evaluation and in-loop checkpoints) / jobs. Prints the medians over the repeats. Usage:

    python scripts/bench_sweep.py [--repeats 3] [OVERRIDES...]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

from bench_startup import wall  # this script's folder is on sys.path

SWEEP = ["activation=relu,tanh", "seed=0,1,2,3", "trainer.epochs=3"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    imports = [sys.executable, "-c", "import trainlab.cli, trainlab.train"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        wall(imports)  # warm-up: file cache
        for r in range(args.repeats):
            sweep_dir = Path(tmp) / str(r)
            cmd = [sys.executable, "-m", "trainlab", "train", "-m", *SWEEP, *args.overrides,
                   "trainer.progress=never", f"hydra.sweep.dir={sweep_dir}"]  # fmt: skip
            t_import, t_sweep = wall(imports), wall(cmd)
            own = [
                json.loads(p.read_text())["wall_time_s"] for p in sweep_dir.rglob("summary.json")
            ]
            rows.append((t_sweep, t_import, sum(own), (t_sweep - t_import - sum(own)) / len(own)))
    names = ("sweep wall", "imports", "jobs' own", "overhead per job")
    medians = [statistics.median(r[i] for r in rows) for i in range(4)]
    print(f"{' '.join(SWEEP + args.overrides)}; {len(own)} jobs, {args.repeats} repeats (medians)")
    print(", ".join(f"{n} {m:.2f} s" for n, m in zip(names, medians, strict=True)))


if __name__ == "__main__":
    main()
