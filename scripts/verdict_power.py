"""How often compare confirms a claim: normal data simulated through `evaluate_claim`.

    python scripts/verdict_power.py [--trials N] [--seed S] [--json]

For each cell (seeds per group, true effect in standard deviations), N trials draw two groups
of unit-variance normal values whose means differ by the effect, judge the claim "a is higher
than b" on them, and count the verdicts. Effect 0 gives the false "confirmed" rate (at most
2.5% expected: one side of a two-sided 95% interval).
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import numpy as np

from trainlab.claims import evaluate_claim
from trainlab.compare import Group, Job

CLAIM = {
    "kind": "compare",
    "metric": "val_acc",
    "a": {"arm": "a"},
    "op": "higher",
    "b": {"arm": "b"},
}
CELLS = ((3, 0.0), (5, 0.0), (3, 2.0), (3, 3.0), (5, 2.0), (5, 3.0))  # (seeds, effect in SD)


def group(arm: str, values: np.ndarray) -> Group:
    jobs = [Job(Path("."), {"arm": arm}, str(i), "completed", summary={"val_acc": float(v)})
            for i, v in enumerate(values)]  # fmt: skip
    return Group(f"arm={arm}", {"arm": arm}, jobs)


def rates(seeds: int, effect: float, trials: int, rng: np.random.Generator) -> dict[str, float]:
    """Share of trials judged confirmed / refuted / inconclusive."""
    draws = rng.standard_normal((trials, 2, seeds))
    draws[:, 0] += effect
    counts = Counter(
        evaluate_claim(CLAIM, [group("a", a), group("b", b)]).verdict for a, b in draws
    )
    return {v: counts[v] / trials for v in ("confirmed", "refuted", "inconclusive")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="one JSON object, for tests")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    table = {f"{n} seeds, {d:g} SD": rates(n, d, args.trials, rng) for n, d in CELLS}
    if args.json:
        print(json.dumps(table))
        return
    print(
        f"{args.trials} trials a cell: `python scripts/verdict_power.py --trials {args.trials}`\n"
    )
    print("| seeds per group | true effect | confirmed | refuted | inconclusive |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for (n, d), r in zip(CELLS, table.values(), strict=True):
        cells = " | ".join(f"{r[v]:.1%}" for v in ("confirmed", "refuted", "inconclusive"))
        print(f"| {n} | {d:g} SD | {cells} |")


if __name__ == "__main__":
    main()
