"""Wall-time overhead of per-layer statistics (issue 3: at most 5% at the default cadence).

Runs `trainlab train [OVERRIDES]` in this process (compose + train) alternately with
stats.enabled=true and false (one pair per repeat, the order alternating), after one untimed
warm-up of each, and prints the median and fastest wall times and the overhead: the median of
the per-pair ratios (robust to load that drifts over the benchmark) and the ratio of the
fastest runs (the least disturbed by other processes on a shared machine). The CPU time of
the process (all threads) is printed as well: on a busy machine it is the steadier figure.
Usage:

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


def timed_run(overrides: list[str], enabled: bool, run_dir: str) -> tuple[float, float, float]:
    """Seconds of (the whole train() call, its training loop, CPU time of the process)."""
    cfg = compose([*overrides, f"stats.enabled={str(enabled).lower()}", "trainer.progress=never"])
    start, cpu = time.perf_counter(), time.process_time()
    summary = train(cfg, run_dir)
    return time.perf_counter() - start, summary["wall_time_s"], time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="timed runs of each setting")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides (default config if none)")
    args = parser.parse_args()
    logging.getLogger("trainlab").setLevel(logging.ERROR)
    times: dict[bool, list[tuple[float, float, float]]] = {True: [], False: []}
    with tempfile.TemporaryDirectory() as tmp:
        for enabled in (True, False):  # warm-up: imports, allocator, first data load
            timed_run(args.overrides, enabled, f"{tmp}/warmup_{enabled}")
        for i in range(args.repeats):
            for enabled in (True, False) if i % 2 == 0 else (False, True):  # alternate the order
                times[enabled].append(timed_run(args.overrides, enabled, f"{tmp}/{i}_{enabled}"))
    print(f"overrides: {' '.join(args.overrides) or '(default config)'}; {args.repeats} runs each")
    for i, what in enumerate(("train() call", "training loop", "CPU time")):
        on = [t[i] for t in times[True]]
        off = [t[i] for t in times[False]]
        paired = statistics.median(a / b for a, b in zip(on, off, strict=True))
        print(
            f"{what:13s}: stats on {statistics.median(on):.3f} s (min {min(on):.3f}), "
            f"off {statistics.median(off):.3f} s (min {min(off):.3f}); overhead: "
            f"{100 * (paired - 1):+.1f}% (median of paired runs), "
            f"{100 * (min(on) / min(off) - 1):+.1f}% (fastest runs)"
        )


if __name__ == "__main__":
    main()
