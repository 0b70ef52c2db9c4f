"""The Ensembles section of a comparison: each group's seeds as one ensemble (trainlab.ensembles)."""

from __future__ import annotations

import math

from trainlab.ensembles import BOOTSTRAP, EnsembleRow

METHOD = (
    "Ensemble: the seeds' softmax probabilities averaged (predictions.npz of each completed job). "
    f"Gain = ensemble accuracy - mean member accuracy; its interval is a {BOOTSTRAP}-resample "
    "percentile bootstrap over seeds (members drawn with replacement, the ensemble weighted by "
    "draws), coarse with 3-5 seeds. Claims use the per-member metric ensemble_gain (the group's "
    "ensemble minus that member) with the Student-t interval over seeds."
)


def ensemble_table(rows: list[EnsembleRow]) -> tuple[list[str], list[list[str]]]:
    """(header, rows), the test split first."""
    header = ["group", "split", "seeds", "mean member acc", "ensemble acc", "gain [95% bootstrap]"]
    out = []
    for r in sorted(rows, key=lambda r: (r.split != "test", r.group)):
        interval = f" [{r.lo:+.4f}, {r.hi:+.4f}]" if math.isfinite(r.lo) else " (one seed)"
        out.append(
            [r.group, r.split, str(r.n), f"{r.members:.4f}", f"{r.ensemble:.4f}",
             f"{r.gain:+.4f}{interval}"]
        )  # fmt: skip
    return header, out
