"""A job's value of a metric, as tables and claims use it: every measured job counts.

Metrics are summary.json keys or dotted paths (`metrics.dead_fraction_max`), plus the derived
`train_error` (1 - train_acc), `acc_gap` (train_acc - val_acc) and `diverged` (1.0 when the
job's status is "diverged", 0.0 when it completed). Failed and killed jobs are never measured.

"Never" is a value: a null `*_to_target` means the target was never reached, and a completed
job has no `diverged_at_step` because it never diverged; both count as +inf, worse than any
number. A diverged job is scored as the worst case of what it could not measure (its final
accuracy and loss), never dropped: accuracies score chance, 1 / num_classes (train_error
1 - 1/C); losses, acc_gap and steps/seconds to target have no finite worst case and score
+inf (claims on them are then judged by ranks). What it did measure before blowing up (the
initial loss, step-0 statistics) keeps its value.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

DERIVED: dict[str, Callable[[Mapping[str, Any]], float]] = {
    "train_error": lambda s: 1.0 - s["train_acc"],
    "acc_gap": lambda s: s["train_acc"] - s["val_acc"],  # overfitting: train minus val accuracy
    "diverged": lambda s: float(s["status"] == "diverged"),  # 1.0 or 0.0 per job
}
NEVER_KEYS = ("steps_to_target", "seconds_to_target", "diverged_at_step")  # null: "never"
OUTCOME_WORDS = ("acc", "loss", "error", "_to_target")  # what a diverged run cannot measure
UNIT_RANGE = ("acc", "error", "fraction", "diverged")  # metrics in [0, 1]
NON_NEGATIVE = ("loss", "steps", "epochs", "params", "time", "std", "norm", "ratio", "diff")
_MISSING = object()


def metric_value(summary: Mapping[str, Any], metric: str) -> float | None:
    """A summary's own value of `metric` (key, dotted path or derived); None if it has none.
    Null `*_to_target`, and `diverged_at_step` of a completed job, are +inf: never."""
    node: Any = summary
    for part in metric.split("."):
        node = node.get(part, _MISSING) if isinstance(node, Mapping) else _MISSING
    if node is _MISSING and metric in DERIVED:
        try:
            return float(DERIVED[metric](summary))
        except (KeyError, TypeError):
            return None
    if metric == "diverged_at_step" and node in (None, _MISSING):
        return math.inf if summary.get("status") == "completed" else None
    if node is None and (metric in NEVER_KEYS or metric.endswith("_to_target")):
        return math.inf
    if isinstance(node, bool) or not isinstance(node, (int, float)):
        return None
    return float(node)


def job_value(summary: Mapping[str, Any], metric: str) -> float | None:
    """The value tables and claims use: the job's own, or a diverged job's worst case."""
    value = metric_value(summary, metric)
    if summary.get("status") != "diverged" or (value is not None and not math.isnan(value)):
        return value
    return worst_value(summary, metric)


def worst_value(summary: Mapping[str, Any], metric: str) -> float | None:
    """What a diverged job scores for a metric it could not measure (None: not an outcome)."""
    if not any(w in metric for w in OUTCOME_WORDS) or metric == "initial_loss" or "gain" in metric:
        return None  # a gain (averaged minus raw weights) has no worst case of its own
    classes = summary.get("num_classes")
    chance = 1 / classes if isinstance(classes, int) and classes > 0 else None
    if metric.endswith("acc") and chance is not None:
        return chance
    if metric == "train_error" and chance is not None:
        return 1 - chance
    return math.inf if lower_is_better(metric) else -math.inf


def lower_is_better(metric: str) -> bool:
    """Whether a smaller value of `metric` is the better one (for ranking)."""
    words = ("loss", "error", "_to_target", "time", "gap", "diff", "dead", "saturat", "diverged")
    return "gain" not in metric and any(w in metric for w in words)


def metric_range(metric: str) -> tuple[float, float]:
    """The values a metric can take, to clip intervals: accuracies and fractions in [0, 1],
    acc_gap in [-1, 1], losses, counts, times, stds and ratios >= 0, else unbounded."""
    leaf = metric.rsplit(".", 1)[-1]
    if metric == "acc_gap" or "acc_gain" in leaf:
        return -1.0, 1.0
    if "gain" in leaf:  # a difference of two losses: either sign
        return -math.inf, math.inf
    if metric in NEVER_KEYS or leaf.endswith(("_to_target", "_s")):
        return 0.0, math.inf
    if any(w in leaf for w in UNIT_RANGE):
        return 0.0, 1.0
    if any(w in leaf for w in NON_NEGATIVE):
        return 0.0, math.inf
    return -math.inf, math.inf
