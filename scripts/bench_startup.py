"""Start-up: `trainlab train trainer.max_steps=1` against `python -c 'import torch'` (issue 11).

Each repeat runs both commands as fresh processes of this interpreter, one after the other
(the order alternating), and prints the median wall time of each and the median of the
paired ratios (robust to load that drifts on a shared machine). Target: at most 1.4x.
Usage:

    python scripts/bench_startup.py [--repeats 7] [OVERRIDES...]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time


def wall(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("overrides", nargs="*", help="more Hydra overrides for the train run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        commands = {
            "import torch": [sys.executable, "-c", "import torch"],
            "trainlab train": [sys.executable, "-m", "trainlab", "train", "trainer.max_steps=1",
                               f"hydra.run.dir={tmp}/run", *args.overrides],
        }  # fmt: skip
        for cmd in commands.values():  # warm-up: the file cache, .pyc files
            wall(cmd)
        times: dict[str, list[float]] = {name: [] for name in commands}
        for i in range(args.repeats):
            for name in list(commands)[:: 1 if i % 2 == 0 else -1]:
                times[name].append(wall(commands[name]))
    for name, ts in times.items():
        print(f"{name:15s}: median {statistics.median(ts):.2f} s, min {min(ts):.2f} s")
    pairs = zip(times["trainlab train"], times["import torch"], strict=True)
    ratio = statistics.median(a / b for a, b in pairs)
    print(
        f"trainlab train / import torch: {ratio:.2f}x (median of {args.repeats} pairs; target 1.4x)"
    )


if __name__ == "__main__":
    main()
