"""Plain-word diagnostics and summary metrics from per-layer statistics.

A Snapshot is one capture moved to the CPU (see stats.Monitor). Every check looks at the
last capture and, when it finds nothing there, at step 0 (the picture at initialisation),
and names the layer, the number and what the lecture suggests.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any

COLLAPSE = 0.1  # activation std below this fraction of the input's: collapsed towards 0
EXPLODE = 10.0  # ... above this multiple: exploding
SATURATED = 0.25  # fraction of saturated values that makes a layer "saturated"
DEAD = 0.5  # fraction of dead units that makes a layer "died" (most units dead)
VANISH = 0.01  # first weight layer's gradient norm below this fraction of the largest
TINY_GRAD = 1e-5  # at step 0, the largest ||grad|| / ||weight|| below this: vanished everywhere
HEALTHY_UPDATE = 1e-3  # the lecture's update-to-weight ratio
FAR = 20.0  # a median update ratio outside [1e-3 / FAR, 1e-3 * FAR] is far from healthy
# the update ratio is judged from this step on: an optimiser's state (momentum, Adam's moment
# estimates) takes about 1/(1 - beta1) = 10 steps to build up; Adam's first step is lr * sign(g)
WARMUP_STEPS = 10

LOSS_FAR = 0.5  # an initial loss outside [ln C (1 - LOSS_FAR), ln C (1 + LOSS_FAR)] is "far"
RELU_FAMILY = ("relu", "leaky_relu")  # torch gain names of the activations that halve variance

Row = dict[str, float]
# the scalar summary metrics every run with statistics has (experiments' claims read them)
SCALAR_METRICS = (
    "dead_fraction_max", "dead_fraction_mean", "saturated_fraction_max", "act_std_first",
    "act_std_last", "act_std_ratio_last_first", "grad_norm_first", "grad_norm_last",
    "grad_ratio_first_last", "update_ratio_median", "act_mean_abs_step0",
)  # fmt: skip


@dataclass
class Snapshot:
    """One capture on the CPU: rows keyed by layer name, in forward order."""

    step: int
    activation: str = ""
    can_die: bool = False
    inputs: dict[str, Row] = field(default_factory=dict)  # {"input": row}
    pre: dict[str, Row] = field(default_factory=dict)  # activation name -> its input's row
    acts: dict[str, Row] = field(default_factory=dict)  # activation name -> its output's row
    weights: dict[str, Row] = field(default_factory=dict)  # "blocks.0.fc.weight" -> row
    lr_factor: float = 1.0  # the lr of the step taken over optimizer.lr (the schedule's factor)

    @property
    def input_std(self) -> float:
        return next(iter(self.inputs.values()), {}).get("std", math.nan)

    def label(self, name: str) -> str:
        """'layer 3 (blocks.2.act, relu)': the lecture's 1-based hidden-layer number."""
        return f"layer {list(self.acts).index(name) + 1} ({name}, {self.activation})"

    def when(self) -> str:
        return "at initialisation (step 0)" if self.step == 0 else f"at step {self.step}"


def summary_metrics(first: Snapshot | None, last: Snapshot | None) -> dict[str, Any]:
    """Scalars for summary.json `metrics`: death, saturation and update ratios at the last
    capture; activation and gradient scales at step 0 (first/last: the first and last hidden
    activation layers, and the first and last weight layers, the classifier's)."""
    if first is None or last is None or not first.acts:
        return {}
    dead = [row["dead"] for row in last.acts.values()]
    stds = [row["std"] for row in first.acts.values()]
    grads = [row["grad_norm"] for row in first.weights.values()]
    ratios = [
        row["update_ratio"] for row in last.weights.values() if math.isfinite(row["update_ratio"])
    ]
    means = [row["mean"] for row in last.acts.values()]
    metrics = {
        "dead_fraction_max": max(dead),
        "dead_fraction_mean": sum(dead) / len(dead),
        "saturated_fraction_max": max(row["saturated"] for row in last.acts.values()),
        "saturated_fraction_max_step0": max(row["saturated"] for row in first.acts.values()),
        "nonfinite_count_max": max(row["nonfinite"] for row in last.acts.values()),
        "input_std": first.input_std,
        "act_std_first": stds[0],
        "act_std_last": stds[-1],
        "act_std_ratio_last_first": _ratio(stds[-1], stds[0]),
        "grad_norm_first": grads[0],
        "grad_norm_last": grads[-1],
        "grad_ratio_first_last": _ratio(grads[0], grads[-1]),
        "update_ratio_median": statistics.median(ratios) if ratios else math.nan,
        "act_std_step0": stds,
        "dead_fraction_last": dead,
        "act_mean_avg": sum(means) / len(means),  # not zero-centred: sigmoid's is about 0.5
        "act_mean_step0": [row["mean"] for row in first.acts.values()],
        "act_mean_abs_step0": sum(abs(row["mean"]) for row in first.acts.values()) / len(stds),
    }  # fmt: skip
    if first.pre:  # stats.pre_activation: the inputs of the nonlinearities (after any norm)
        pre = list(first.pre.values())
        metrics.update(
            pre_mean_abs_max=max(abs(row["mean"]) for row in pre),
            pre_std_min=min(row["std"] for row in pre),
            pre_std_max=max(row["std"] for row in pre),
        )
    return metrics


def _ratio(a: float, b: float) -> float:
    return a / b if b != 0 else math.nan


def diagnose(first: Snapshot | None, last: Snapshot | None) -> list[str]:
    """Plain-word warnings, each naming the layer, the number and the lecture's suggestion."""
    if first is None or last is None:
        return []
    lines: list[str] = []
    for check in (nonfinite, died, saturated, collapsed, vanishing, update_ratio):
        found = check(last)
        if not found and first is not last:
            found = check(first)
        lines += found
    return lines


def nonfinite(snap: Snapshot) -> list[str]:
    return [
        f"{snap.label(name)}: {row['nonfinite']:.0f} non-finite activations (inf/NaN) "
        f"{snap.when()}; the run is diverging: try a smaller optimizer.lr, norm=batch or "
        "a smaller init scale"
        for name, row in snap.acts.items()
        if row["nonfinite"] > 0
    ]


def died(snap: Snapshot) -> list[str]:
    hint = ("try activation=leaky_relu, a smaller optimizer.lr or init.bias=0.01" if snap.can_die
            else "its inputs are exactly zero: check the init (zeros/constant weights carry "
                 "no signal)")  # fmt: skip
    return [
        f"{snap.label(name)}: {row['dead']:.0%} dead units (zero for every example of the "
        f"batch) {snap.when()}; {hint}"
        for name, row in snap.acts.items()
        if row["dead"] >= DEAD
    ]


def saturated(snap: Snapshot) -> list[str]:
    return [
        f"{snap.label(name)}: {row['saturated']:.0%} of activations saturated {snap.when()}; "
        "saturated units kill the gradient: try init=xavier_normal (a smaller init scale), "
        "norm=batch or activation=relu"
        for name, row in snap.acts.items()
        if row["saturated"] >= SATURATED
    ]


def collapsed(snap: Snapshot) -> list[str]:
    """One line for the first layer whose std left [COLLAPSE, EXPLODE] x the input's std."""
    base = snap.input_std
    if not math.isfinite(base) or base == 0:
        return []
    deepest = list(snap.acts)[-1]
    for name, row in snap.acts.items():
        if row["dead"] >= DEAD:
            continue  # reported by died()
        scale = row["std"] / base
        tail = (
            f"; {snap.label(deepest)} ends at {snap.acts[deepest]['std']:.3g}"
            if deepest != name
            else ""
        )
        if scale < COLLAPSE:
            return [
                f"{snap.label(name)}: activation std {row['std']:.3g} is {scale:.1%} of the "
                f"input's {base:.3g} {snap.when()}{tail}; activations collapse towards 0 "
                "and gradients vanish: try init=xavier_normal (tanh/sigmoid), "
                "init=kaiming_normal (relu) or norm=batch"
            ]
        if scale > EXPLODE:
            return [
                f"{snap.label(name)}: activation std {row['std']:.3g} is {scale:.0f}x the "
                f"input's {base:.3g} {snap.when()}{tail}; activations explode: try a smaller "
                "init scale (init=xavier_normal or kaiming_normal) or norm=batch"
            ]
    return []


def vanishing(snap: Snapshot) -> list[str]:
    """Gradients that vanish towards the first layers (against the largest gradient norm)
    or, at step 0, everywhere (against the weights: the loss is about ln C there)."""
    rows = {name: row for name, row in snap.weights.items() if math.isfinite(row["grad_norm"])}
    if len(rows) < 2:
        return []
    first, top = next(iter(rows)), max(rows, key=lambda name: rows[name]["grad_norm"])
    g_first, g_top = rows[first]["grad_norm"], rows[top]["grad_norm"]
    if g_top == 0:
        return []  # nothing flows at all: dead units, reported by died()
    if g_first / g_top < VANISH:
        return [
            f"{first}: gradient norm {g_first:.3g} is {g_first / g_top:.1e} of {top}'s "
            f"{g_top:.3g} {snap.when()}; gradients vanish towards the first layers: try "
            "activation=relu, init=kaiming_normal/xavier_normal or norm=batch"
        ]
    relative = g_top / rows[top]["weight_norm"]
    if snap.step == 0 and relative < TINY_GRAD:
        return [
            f"{top}: the largest gradient norm, {g_top:.3g}, is {relative:.1e} of its weight "
            f"norm {snap.when()}; gradients vanish in every layer: try init=xavier_normal "
            "(tanh/sigmoid), init=kaiming_normal (relu) or norm=batch"
        ]
    return []


def lr_factor(optimizer: Any) -> float:
    """The lr the last step used over the configured one (torch's schedulers keep it as
    `initial_lr`): 1 without a schedule, below 1 where a schedule warmed up or annealed."""
    group = optimizer.param_groups[0]
    return group["lr"] / group.get("initial_lr", group["lr"]) if group["lr"] else 0.0


def update_ratio(snap: Snapshot) -> list[str]:
    """The median ||update|| / ||weight|| over layers, against the lecture's 1e-3, judged at the
    configured optimizer.lr: a schedule that annealed the lr is not a too-small lr. Not during
    the optimiser's first steps (WARMUP_STEPS)."""
    if snap.step < WARMUP_STEPS or not snap.lr_factor > 0:
        return []
    ratios = {
        name: row["update_ratio"]
        for name, row in snap.weights.items()
        if math.isfinite(row["update_ratio"]) and row["update_ratio"] > 0
    }  # 0: no gradient
    if not ratios:
        return []
    median = statistics.median(ratios.values())
    at_lr = median / snap.lr_factor  # the update is proportional to the lr
    if HEALTHY_UPDATE / FAR <= at_lr <= HEALTHY_UPDATE * FAR:
        return []
    pick = (max if at_lr > HEALTHY_UPDATE else min)(ratios, key=ratios.get)
    verdict = (
        "too large: try a smaller optimizer.lr"
        if at_lr > HEALTHY_UPDATE
        else "too small: try a larger optimizer.lr"
    )
    scheduled = (
        ""
        if snap.lr_factor == 1
        else f", {at_lr:.1e} at optimizer.lr (the schedule's lr here is {snap.lr_factor:.2g}x it)"
    )
    return [
        f"{pick}: update/weight ratio {ratios[pick]:.1e} {snap.when()} (median over layers "
        f"{median:.1e}{scheduled}; about 1e-3 is healthy); the steps are {verdict}"
    ]


def initial_loss(loss: float, num_classes: int) -> list[str]:
    """The lecture's first sanity check: with small weights the loss starts at about ln C."""
    expected = math.log(num_classes)
    if not math.isfinite(loss):
        return [f"initial loss {loss} is not finite: the init scale is far too large"]
    if abs(loss - expected) <= LOSS_FAR * expected:
        return []
    why = ("the logits start large: the init scale is too large for this net (try a smaller "
           "init scale, init=xavier_normal or kaiming_normal, or norm=batch)" if loss > expected
           else "below what uniform predictions give: check the labels and the loss")  # fmt: skip
    return [
        f"initial loss {loss:.3g} is far from ln {num_classes} = {expected:.3f} (the loss of "
        f"uniform predictions, the lecture's first check); {why}"
    ]


def init_meets_activation(cfg: Any) -> list[str]:
    """Xavier (or LeCun) at its own scale on a ReLU-family activation: the lecture's contrast."""
    init, act = cfg.init, cfg.activation
    if not (init.get("unit_gain") and init.gain is None and act.nonlinearity in RELU_FAMILY):
        return []
    depth = cfg.model.get("depth", 1)
    return [
        f"init={init.name} with activation={act.name}: its scale (std about 1/sqrt(fan_in)) "
        f"assumes a zero-centred activation, and each {act.name} layer halves the variance, so "
        f"the std shrinks about 1/sqrt(2) per layer ({2 ** (-depth / 2):.2g}x after {depth}): "
        "the lecture's 'Xavier breaks for ReLU' (He et al. 2015); use init=kaiming_normal, "
        "init.gain=activation, or norm=batch"
    ]
