"""Per-layer statistics during training: what the lecture watches inside the network.

Interface used by train.py:
    monitor = Monitor(model, cfg, writer)
    with monitor.capture(step): logits = model(x)   # hooks exist only on capture steps
    monitor.after_backward(step); optimizer.step(); monitor.after_step(step, optimizer)
    monitor.summary_metrics() -> dict; monitor.diagnostics() -> list[str]

A capture happens at step 0 (before any update) and every `stats.every` steps; histograms
every `stats.histogram_every` steps. On a capture step, hooks that live only for that forward
reduce the model input and every activation layer's output (with `stats.pre_activation`,
also its input: the fc/conv output after its norm) to a few numbers on the device. They use
the first `stats.max_batch` examples of the training batch itself: a free view, no extra
forward. After backward the weights' std and norms and the gradient norms are read and the
weights snapshotted; after the optimiser step, the norm of the update actually taken. Then
everything moves to the CPU in one copy. Other steps pay a modulo and a function call.

TensorBoard tags put one statistic of every layer in one chart: act_{mean,std,saturated,
zeros,dead,nonfinite}/<layer> (act_mean, act_std, act_nonfinite also for `input`),
pre_{mean,std,nonfinite}/<layer>, {weight_std,grad_norm,update_ratio}/<layer>.weight,
histograms act_hist/<layer> (and pre_hist/<layer>); a custom-scalars layout draws each
statistic as one multi-line chart.

The reductions live in stats_reduce, the capture hooks in stats_capture.
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import torch
from omegaconf import DictConfig
from torch import Tensor, nn

from trainlab import diagnostics, tb
from trainlab.models import affine_layers
from trainlab.stats_capture import Capture, SharedModuleError, hooked_layers
from trainlab.stats_reduce import (
    BINS,
    HIST_HEAD,
    INPUT,
    RAW,
    STATS,
    finish_stats,
    raw_stats,
    tensor_histogram,
    tensor_stats,
)

__all__ = [  # re-exported: callers import the statistics API from here
    "BINS", "HIST_HEAD", "INPUT", "RAW", "STATS", "Capture", "SharedModuleError",
    "finish_stats", "hooked_layers", "raw_stats", "tensor_histogram", "tensor_stats",
]  # fmt: skip
WEIGHT_STATS = ("weight_std", "grad_norm", "update_ratio")  # logged (a Snapshot adds weight_norm)
INPUT_STATS = ("mean", "std", "nonfinite")  # logged for the model input (saturation, death: n/a)
PRE_STATS = ("mean", "std", "nonfinite")  # logged for the input of each nonlinearity


# --- the monitor the training loop calls -------------------------------------------------------


@dataclass(eq=False)
class MemberStats:
    """One model's captures and where they are logged (a fused model has one per member)."""

    writer: Any = None
    active: bool = True  # False: a fused member that diverged, no longer logged
    first: diagnostics.Snapshot | None = None  # the capture at step 0
    last: diagnostics.Snapshot | None = None  # the latest capture
    last_hists: dict[tuple[str, str], list[float]] = field(default_factory=dict)

    def summary_metrics(self) -> dict[str, Any]:
        return diagnostics.summary_metrics(self.first, self.last)

    def diagnostics(self) -> list[str]:
        return diagnostics.diagnose(self.first, self.last)


class Monitor:
    """Activation, gradient and update statistics at step 0 and every `stats.every` steps.

    `writers` (one per member) makes it the monitor of a fused model (trainlab.fused_models):
    its tensors carry the members first and `model.affine_layers()` names its stacked
    weights (K, out, in); each member gets the statistics, TensorBoard tags and diagnostics
    its own run would get (`members[k]`).
    """

    def __init__(
        self,
        model: nn.Module,
        cfg: DictConfig,
        writer: Any = None,
        *,
        max_batch: int | None = None,
        layout: bool = True,  # False: a resumed run's events already hold the chart layout
        writers: list[Any] | None = None,
        activations: list[DictConfig] | None = None,
    ) -> None:
        self.model = model
        self.every, self.histogram_every = cfg.stats.every, cfg.stats.histogram_every
        self.pre_activation = cfg.stats.pre_activation
        self.max_batch = max_batch or cfg.stats.max_batch
        acts = activations or [cfg.activation]  # a fused model's members: each its own
        self.activations = [(a.name, a.can_die) for a in acts]  # diagnostics read them
        bounds = [(a.saturation_low, a.saturation_high) for a in acts]
        self.low, self.high = bounds[0] if len(set(bounds)) == 1 else zip(*bounds, strict=True)
        self.layers = hooked_layers(model)
        self.layer_names = [name for name, _ in self.layers]
        self.fused = 0 if writers is None else len(writers)  # members of a fused model
        self.members = [MemberStats(w) for w in ([writer] if writers is None else writers)]
        self.weights = [  # frozen layers (transfer) have no gradient or update to measure
            (f"{name}.weight", layer.weight)
            for name, layer in (model.affine_layers() if self.fused else affine_layers(model))
            if layer.weight.requires_grad
        ]
        self.weight_names = [name for name, _ in self.weights]
        self._capture: Capture | None = None
        self._weight_stats: Tensor | None = None  # (members, weights, 3): std, norm, grad norm
        self._before: list[Tensor] = []  # weights before the step, on capture steps only
        for member in self.members:
            if member.writer is not None and layout:
                tb.add_multiline_layout(member.writer, self.charts())

    # an unfused model's monitor is its one member's
    writer = property(lambda self: self.members[0].writer)
    first = property(lambda self: self.members[0].first,
                     lambda self, snap: setattr(self.members[0], "first", snap))  # fmt: skip
    last = property(lambda self: self.members[0].last,
                    lambda self, snap: setattr(self.members[0], "last", snap))  # fmt: skip
    last_hists = property(lambda self: self.members[0].last_hists)

    def charts(self) -> dict[str, dict[str, list[str]]]:
        """One custom-scalars chart per statistic, drawing every tag of it (a regex): the same
        charts for every model, so runs of an MLP and a CNN in one logdir share them."""
        charts = {"activations": {f"act_{s}": [f"^act_{s}/"] for s in STATS}}
        if self.pre_activation:
            charts["pre-activations"] = {f"pre_{s}": [f"^pre_{s}/"] for s in PRE_STATS}
        charts["weights"] = {s: [f"^{s}/"] for s in WEIGHT_STATS}
        return charts

    def capturing(self, step: int) -> bool:
        return step % self.every == 0 or step % self.histogram_every == 0

    def capture(self, step: int):
        """Context for the training forward: hooks on capture steps, nothing otherwise."""
        if not self.capturing(step):
            self._capture = None
            return nullcontext()
        bins = BINS if step % self.histogram_every == 0 else 0
        self._capture = Capture(
            self.model,
            self.layers,
            self.low,
            self.high,
            pre_activation=self.pre_activation,
            max_batch=self.max_batch,
            bins=bins,
            members=self.fused,
        )
        return self._capture.hooks()

    def after_backward(self, step: int) -> None:
        """Weight std, weight norm, gradient norm; snapshot the weights for the update ratio.

        No torch.no_grad() here or in after_step: every tensor is detached, and the decorator
        would cost more than the early return on the steps that capture nothing.
        """
        if self._capture is None or not self.capturing(step):
            return
        m = max(self.fused, 1)
        weights = [w.detach() for _, w in self.weights]
        flat = [w.reshape(m, -1) for w in weights]  # (members, numel): one row per member
        grads = [torch.zeros_like(f) if w.grad is None else w.grad.reshape(m, -1)
                 for f, (_, w) in zip(flat, self.weights, strict=True)]  # fmt: skip
        norm = torch.linalg.vector_norm
        self._weight_stats = torch.stack(
            [
                torch.stack([f.std(1) for f in flat], dim=1),
                torch.stack([norm(f, dim=1) for f in flat], dim=1),
                torch.stack([norm(g, dim=1) for g in grads], dim=1),
            ],
            dim=2,
        )  # fmt: skip (members, weights, 3)
        self._before = [w.clone() for w in weights]

    def after_step(self, step: int, optimizer: Any = None) -> None:
        """||w_after - w_before|| of the step just taken, then log the whole capture; the
        optimizer tells the lr that step used (diagnostics judge the ratio against it)."""
        if self._capture is None or not self.capturing(step) or not self._before:
            return
        self.flush(step, self.update_norms())
        if optimizer is not None:
            factor = diagnostics.lr_factor(optimizer)
            for member in self.members:
                if member.active and member.last is not None:
                    member.last.lr_factor = factor  # the snapshot flush just made

    def update_norms(self) -> Tensor:
        """(members, weights) ||w_after - w_before|| on the device; releases the snapshot."""
        after = [w.detach() for _, w in self.weights]
        steps = torch._foreach_sub(after, self._before)
        m = max(self.fused, 1)
        norms = torch.stack([torch.linalg.vector_norm(d.reshape(m, -1), dim=1) for d in steps], 1)
        self._before = []
        return norms

    def flush(self, step: int, update_norms: Tensor | None = None) -> None:
        """Move the capture to the CPU in one copy, log it and keep it as a Snapshot per member.

        The probe calls this directly after backward: no step taken, no update ratio.
        """
        capture, self._capture = self._capture, None
        if capture is None:
            return
        acts = capture.stacked()  # (rows, members, RAW)
        m, n = acts.shape[1], len(self.weights)
        weights = self._weight_stats
        if weights is None:
            weights = torch.full((m, n, 3), math.nan, device=acts.device)
        if update_norms is None:
            update_norms = torch.full((m, n), math.nan, device=acts.device)
        hist_rows = [row for row in capture.rows() if row in capture.hists]
        parts = [acts.transpose(0, 1).reshape(m, -1), weights.reshape(m, -1), update_norms]
        parts += [capture.hists[row] for row in hist_rows]
        table = torch.cat(parts, dim=1).cpu().tolist()  # the one device-to-host copy
        self._weight_stats = None
        n_acts, offset = acts[:, 0].numel(), acts[:, 0].numel() + 4 * n
        width = len(HIST_HEAD) + capture.bins
        for k, (member, flat) in enumerate(zip(self.members, table, strict=True)):
            if not member.active:
                continue
            snap = self._snapshot(step, capture, flat[:n_acts], flat[n_acts:offset], k)
            member.last_hists = {row: flat[offset + i * width:offset + (i + 1) * width]
                                 for i, row in enumerate(hist_rows)}  # fmt: skip
            if member.first is None:
                member.first = snap
            member.last = snap
            if member.writer is not None:
                log_snapshot(member.writer, snap)
                for (kind, name), hist in member.last_hists.items():
                    log_histogram(member.writer, f"{'pre' if kind == 'pre' else 'act'}_hist/{name}",
                                  hist, step)  # fmt: skip

    def _snapshot(
        self, step: int, capture: Capture, acts: list[float], weights: list[float], k: int = 0
    ) -> diagnostics.Snapshot:
        name, can_die = self.activations[k if len(self.activations) > 1 else 0]
        snap = diagnostics.Snapshot(step=step, activation=name, can_die=can_die)
        tables = {INPUT: snap.inputs, "pre": snap.pre, "act": snap.acts}
        for (kind, name), row in zip(capture.rows(), capture.finish(acts, k), strict=True):
            tables[kind][name] = row
        n = len(self.weights)
        for i, name in enumerate(self.weight_names):
            std, norm, grad = weights[3 * i : 3 * i + 3]
            ratio = weights[3 * n + i] / norm if norm else math.nan  # of the step just taken
            snap.weights[name] = {"weight_std": std, "weight_norm": norm, "grad_norm": grad,
                                  "update_ratio": ratio}  # fmt: skip
        return snap

    def summary_metrics(self) -> dict[str, Any]:
        return self.members[0].summary_metrics()

    def diagnostics(self) -> list[str]:
        return self.members[0].diagnostics()


# --- TensorBoard -------------------------------------------------------------------------------


def log_snapshot(writer: Any, snap: diagnostics.Snapshot) -> None:
    """Scalars named `<statistic>/<layer>`: one TensorBoard chart per statistic, all layers.

    All of them go in one event (one Summary with many values): add_scalar per tag would
    cost an event each.
    """
    values = []
    for rows, prefix, names in (
        (snap.inputs, "act", INPUT_STATS),
        (snap.pre, "pre", PRE_STATS),
        (snap.acts, "act", STATS),
    ):
        values += [
            (f"{prefix}_{stat}/{name}", row[stat]) for name, row in rows.items() for stat in names
        ]
    values += [
        (f"{stat}/{name}", row[stat])
        for name, row in snap.weights.items()
        for stat in WEIGHT_STATS
        if stat != "update_ratio" or math.isfinite(row[stat])
    ]  # the probe takes no step
    tb.add_scalars(writer, values, snap.step)


def log_histogram(writer: Any, tag: str, hist: list[float], step: int) -> None:
    """A histogram reduced on the device (min, max, num, sum, sum_squares, counts...)."""
    lo, hi, num, total, squares = hist[: len(HIST_HEAD)]
    counts = hist[len(HIST_HEAD) :]
    if num < 1:  # every value was non-finite: nothing to draw (the count is in act_nonfinite)
        return
    width = max((hi - lo) / len(counts), 1e-30)
    limits = [lo + width * (i + 1) for i in range(len(counts))]
    writer.add_histogram_raw(tag, lo, hi, num, total, squares, limits, counts, step)
