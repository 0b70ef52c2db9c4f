"""What Hydra's side of a one-process sweep costs, with trainlab's shortcuts and without.

Runs `trainlab train -m activation=relu,tanh seed=0,1,2,3 trainer.epochs=3 [OVERRIDES]` twice
per repeat, interleaved with the order alternating: as the CLI runs it (`trainlab`), and with
Hydra's own path (`hydra`: no composition memo (trainlab/compose_cache.py), Hydra's
`run_job`, `OmegaConf.to_yaml` and `copy.deepcopy`, no `gc.freeze`). Prints the median
sweep wall time of each, their difference per job, and both runs' counts of full
compositions. The `.hydra/` files of both are compared byte for byte (they must not differ).

    python scripts/bench_compose.py [--repeats 3] [OVERRIDES...]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SWEEP = ["activation=relu,tanh", "seed=0,1,2,3", "trainer.epochs=3", "trainer.progress=never"]
HYDRA_PATH = """
import copy, sys
from omegaconf import OmegaConf
import hydra.core.utils
import trainlab.compose_cache as cc, trainlab.tasks as tasks, trainlab.sweep_fusion as sf
import trainlab.hydra_app as ha, trainlab.sweep_job as sj
cc.install = lambda: None
tasks.to_yaml = OmegaConf.to_yaml
sf.copy_config = copy.deepcopy
ha.freeze_imports = lambda module: None
sj.run_job = hydra.core.utils.run_job
"""
RUN = """
import sys, atexit
from hydra._internal.config_loader_impl import ConfigLoaderImpl
import trainlab.compose_cache as cc
count = [0]
full = ConfigLoaderImpl.load_configuration
def counted(*a, **k):
    count[0] += 1
    return full(*a, **k)
cc._original = ConfigLoaderImpl.load_configuration = counted
atexit.register(lambda: print("FULL", count[0], file=sys.stderr))
from trainlab.cli import main
sys.argv = ["trainlab", *sys.argv[1:]]
sys.exit(main())
"""


def run(kind: str, sweep_dir: Path, overrides: list[str]) -> tuple[float, int]:
    code = (HYDRA_PATH if kind == "hydra" else "") + RUN
    cmd = [sys.executable, "-c", code, "train", "-m", *SWEEP, *overrides,
           f"hydra.sweep.dir={sweep_dir}"]  # fmt: skip
    start = time.perf_counter()
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    wall = time.perf_counter() - start
    full = [line for line in done.stderr.splitlines() if line.startswith("FULL ")]
    return wall, int(full[-1].split()[1]) if full else -1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    kinds = ["trainlab", "hydra"]
    times: dict[str, list[float]] = {k: [] for k in kinds}
    full: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            for kind in kinds if r % 2 == 0 else kinds[::-1]:
                t, full[kind] = run(kind, Path(tmp) / f"{kind}{r}", args.overrides)
                times[kind].append(t)
        records = {
            k: {p.relative_to(Path(tmp) / f"{k}0"): p.read_bytes()
                for p in (Path(tmp) / f"{k}0").glob("**/.hydra/*")}
            for k in kinds
        }  # fmt: skip
    same = records["trainlab"].keys() == records["hydra"].keys() and all(
        records["hydra"][p] == b.replace(b"/trainlab0", b"/hydra0")
        for p, b in records["trainlab"].items()
    )
    jobs = 8
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"{' '.join(SWEEP + args.overrides)}; {args.repeats} repeats (medians); "
          f"load average {os.getloadavg()[0]:.2f}")  # fmt: skip
    for k in kinds:
        print(f"{k}: sweep wall {med[k]:.2f} s, {full[k]} full compositions")
    print(
        f"Hydra's path costs {(med['hydra'] - med['trainlab']) / jobs:.3f} s more per job; "
        f".hydra/ files {'identical' if same else 'DIFFER'} ({len(records['trainlab'])})"
    )


if __name__ == "__main__":
    main()
