"""Run every lecture experiment (or the ones named) and tabulate wall time and verdicts.

    python scripts/run_experiments.py [--out DIR] [--ab OVERRIDE ...] [NAME ...]

Each experiment runs as `trainlab train -m +experiment=NAME` in DIR (default
outputs/experiments); the table (Markdown) gives the command's wall time on this machine and
the count of claims compare judged confirmed / refuted / inconclusive, read from claims.json.
`--ab hydra.launcher.n_jobs=1` runs each experiment twice, as is and with those overrides,
interleaved (the first of a pair alternates), with the load average at each start.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from trainlab.cli import conf_dir


def experiments() -> list[str]:
    return sorted(p.stem for p in (Path(conf_dir()) / "experiment").glob("*.yaml"))


def run(name: str, out: Path, overrides: tuple[str, ...] = ()) -> dict:
    cwd = out / name
    cwd.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()[0]
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "trainlab", "train", "-m", f"+experiment={name}", *overrides],
        cwd=cwd,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - start
    (cwd / "stdout.txt").write_text(proc.stdout + proc.stderr)
    sweeps = sorted((cwd / "outputs" / "sweeps").glob("*"))
    claims = (
        json.loads((sweeps[-1] / "claims.json").read_text())
        if sweeps and (sweeps[-1] / "claims.json").exists()
        else []
    )
    verdicts = [c["verdict"] for c in claims]
    return {
        "name": name,
        "wall_s": wall,
        "load": load,
        "exit": proc.returncode,
        "sweep": str(sweeps[-1]) if sweeps else "",
        **{v: verdicts.count(v) for v in ("confirmed", "refuted", "inconclusive")},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="experiments (default: all)")
    parser.add_argument("--out", default="outputs/experiments")
    parser.add_argument("--ab", nargs="+", metavar="OVERRIDE", help="also run with these")
    args = parser.parse_args()
    out = Path(args.out).resolve()
    if args.ab:
        return ab(args.names or experiments(), out, tuple(args.ab))
    rows = []
    print("| experiment | wall time (s) | exit | confirmed | refuted | inconclusive |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name in args.names or experiments():
        row = run(name, out)
        rows.append(row)
        print(
            f"| {name} | {row['wall_s']:.0f} | {row['exit']} | {row['confirmed']} | "
            f"{row['refuted']} | {row['inconclusive']} |",
            flush=True,
        )
    (out / "experiments.json").write_text(json.dumps(rows, indent=2))
    print(f"\ncommand: {' '.join([sys.executable, *sys.argv])}; sweeps under {out}")


def ab(names: list[str], out: Path, overrides: tuple[str, ...]) -> None:
    """Each experiment as is (A) and with `overrides` (B), interleaved."""
    print("| experiment | A wall (s) | load | B wall (s) | load | A/B | verdicts A / B |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | --- |")
    rows = []
    for i, name in enumerate(names):
        order = [("A", ()), ("B", overrides)][:: 1 if i % 2 == 0 else -1]
        pair = {tag: run(name, out / tag, extra) for tag, extra in order}
        a, b = pair["A"], pair["B"]
        rows.append(pair)
        counts = ["/".join(str(r[v]) for v in ("confirmed", "refuted", "inconclusive"))
                  for r in (a, b)]  # fmt: skip
        print(f"| {name} | {a['wall_s']:.0f} | {a['load']:.1f} | {b['wall_s']:.0f} | "
              f"{b['load']:.1f} | {a['wall_s'] / b['wall_s']:.2f} | {counts[0]} / {counts[1]} |",
              flush=True)  # fmt: skip
    total = [sum(p[t]["wall_s"] for p in rows) for t in ("A", "B")]
    print(f"\ntotal A {total[0]:.0f} s, B {total[1]:.0f} s (A/B {total[0] / total[1]:.2f})")
    (out / "experiments_ab.json").write_text(json.dumps(rows, indent=2))
    print(f"command: {' '.join([sys.executable, *sys.argv])}; sweeps under {out}")


if __name__ == "__main__":
    main()
