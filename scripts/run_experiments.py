"""Run every lecture experiment (or the ones named) and tabulate wall time and verdicts.

    python scripts/run_experiments.py [--out DIR] [NAME ...]

Each experiment runs as `trainlab train -m +experiment=NAME` in DIR (default
outputs/experiments); the table (Markdown) gives the command's wall time on this machine and
the count of claims compare judged confirmed / refuted / inconclusive, read from claims.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from trainlab.cli import conf_dir


def experiments() -> list[str]:
    return sorted(p.stem for p in (Path(conf_dir()) / "experiment").glob("*.yaml"))


def run(name: str, out: Path) -> dict:
    cwd = out / name
    cwd.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "trainlab", "train", "-m", f"+experiment={name}"],
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
        "exit": proc.returncode,
        "sweep": str(sweeps[-1]) if sweeps else "",
        **{v: verdicts.count(v) for v in ("confirmed", "refuted", "inconclusive")},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="experiments (default: all)")
    parser.add_argument("--out", default="outputs/experiments")
    args = parser.parse_args()
    out = Path(args.out).resolve()
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


if __name__ == "__main__":
    main()
