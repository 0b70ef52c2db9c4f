"""Wall-time overhead of per-layer statistics (issue 3: at most 5% at the default cadence).

Runs `trainlab train [OVERRIDES]` in this process (compose + train) alternately with
stats.enabled=true and false, after one untimed warm-up of each, and prints the median and
the fastest wall time of each setting and the overhead (the minimum is the figure least
disturbed by other processes on a shared machine). Usage:

    python scripts/bench_stats_overhead.py [--repeats 7] [OVERRIDES...]
    python scripts/bench_stats_overhead.py --repeats 5 model=cnn trainer.epochs=2
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time

from trainlab.config import compose
from trainlab.train import train


def timed_run(overrides: list[str], enabled: bool, run_dir: str) -> tuple[float, float]:
    """(seconds for the whole train() call, seconds of its training loop)."""
    cfg = compose([*overrides, f"stats.enabled={str(enabled).lower()}", "trainer.progress=never"])
    start = time.perf_counter()
    summary = train(cfg, run_dir)
    return time.perf_counter() - start, summary["wall_time_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="timed runs of each setting")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides (default config if none)")
    args = parser.parse_args()
    logging.getLogger("trainlab").setLevel(logging.ERROR)
    times: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
    with tempfile.TemporaryDirectory() as tmp:
        for enabled in (True, False):  # warm-up: imports, allocator, first data load
            timed_run(args.overrides, enabled, f"{tmp}/warmup_{enabled}")
        for i in range(args.repeats):
            for enabled in (True, False) if i % 2 == 0 else (False, True):  # alternate the order
                times[enabled].append(timed_run(args.overrides, enabled, f"{tmp}/{i}_{enabled}"))
    print(f"overrides: {' '.join(args.overrides) or '(default config)'}; {args.repeats} runs each")
    for i, what in enumerate(("train() call", "training loop")):
        for stat in (statistics.median, min):
            on, off = (stat(t[i] for t in times[enabled]) for enabled in (True, False))
            print(
                f"{what:14s} {stat.__name__:6s}: stats on {on:.3f} s, off {off:.3f} s: "
                f"overhead {100 * (on / off - 1):+.1f}%"
            )


if __name__ == "__main__":
    main()
