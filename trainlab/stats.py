"""Per-layer statistics during training: what the lecture watches inside the network.

Interface used by train.py:
    monitor = Monitor(model, cfg, writer)
    with monitor.capture(step): logits = model(x)   # hooks exist only on capture steps
    monitor.after_backward(step); optimizer.step(); monitor.after_step(step)
    monitor.summary_metrics() -> dict; monitor.diagnostics() -> list[str]

A capture happens at step 0 (before any update) and every `stats.every` steps; histograms
every `stats.histogram_every` steps. On a capture step, forward hooks on the model input
and on every activation layer reduce each output to a few numbers on the device (on its
first `stats.max_batch` examples: a free view of the training forward, no extra pass);
after backward the weights' std and gradient norm are read and the weights snapshotted;
after the optimiser step the update-to-weight ratio is computed, and everything moves to
the CPU in one copy. Steps in between pay one modulo.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

import torch
from omegaconf import DictConfig
from tensorboard.compat.proto.summary_pb2 import Summary
from torch import Tensor, nn

from trainlab import diagnostics, tb
from trainlab.models import activation_layers, affine_layers

STATS = ("mean", "std", "saturated", "zeros", "dead", "nonfinite")  # one capture of one layer
WEIGHT_STATS = ("weight_std", "grad_norm", "update_ratio")  # logged
WEIGHT_ROW = ("weight_std", "weight_norm", "grad_norm", "update_ratio")  # kept in a Snapshot
INPUT_STATS = ("mean", "std", "nonfinite")  # logged for the model input (saturation, death: n/a)
PRE_STATS = ("mean", "std", "nonfinite")  # logged for the input of each nonlinearity
HIST_HEAD = ("min", "max", "num", "sum", "sum_squares")  # then `bins` counts
BINS = 64
INPUT = "input"


class SharedModuleError(ValueError):
    """One activation module called at two places: its statistics would mix two layers."""


# --- reductions on the device (no host sync) -------------------------------------------------


def tensor_stats(y: Tensor, low: float | None = None, high: float | None = None) -> Tensor:
    """(len(STATS),) on y's device: statistics of the finite values, and the non-finite count.

    Units are dimension 1 (features (B, F) or channels (B, C, H, W)); a unit is dead when
    it is exactly 0 at every example (and every position) of the batch. Saturated: y <= low
    or y >= high (None: that side never saturates).
    """
    y = y.detach().float()
    finite = torch.isfinite(y)
    n = finite.sum().clamp(min=1)  # fractions are of the finite values
    mean = torch.where(finite, y, 0.0).sum() / n
    std = (
        torch.where(finite, y - mean, 0.0).square().sum() / n
    ).sqrt()  # two-pass: exact for tiny stds
    saturated = torch.zeros_like(finite)
    if low is not None:
        saturated |= y <= low
    if high is not None:
        saturated |= y >= high
    unit_dims = [d for d in range(y.dim()) if d != 1]
    alive = y.ne(0).sum(dim=unit_dims) > 0  # (units,); NaN and inf count as alive
    return torch.stack([
        mean, std, (saturated & finite).sum() / n, y.eq(0).sum() / n,
        1.0 - alive.float().mean(), (y.numel() - finite.sum()).float(),
    ])  # fmt: skip


def tensor_histogram(y: Tensor, bins: int = BINS) -> Tensor:
    """(5 + bins,) on y's device: min, max, count, sum, sum of squares, then equal-width counts
    between min and max, of the finite values only (TensorBoard's raw histogram)."""
    y = y.detach().float().flatten()
    finite = torch.isfinite(y)
    big = torch.finfo(torch.float32).max
    lo, hi = torch.where(finite, y, big).min(), torch.where(finite, y, -big).max()
    yf = torch.where(finite, y, lo)
    width = ((hi - lo) / bins).clamp(min=1e-30)
    idx = ((yf - lo) / width).nan_to_num(0.0).clamp(0, bins - 1).long()
    weight = finite.float()
    counts = torch.zeros(bins, device=y.device).scatter_add_(0, idx, weight)
    head = torch.stack([lo, hi, weight.sum(), (yf * weight).sum(), (yf.square() * weight).sum()])
    return torch.cat([head, counts])


# --- hooks, alive only while capturing ---------------------------------------------------------


def hooked_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The activation layers, checked to be one module per call site (else SharedModuleError)."""
    layers = list(activation_layers(model))
    names: dict[int, list[str]] = {}
    for name, module in model.named_modules(remove_duplicate=False):
        names.setdefault(id(module), []).append(name)
    for name, module in layers:
        if len(names[id(module)]) > 1:
            raise SharedModuleError(
                f"activation module {name!r} is also registered as {names[id(module)][1]!r}: "
                "one module reused at two call sites would mix two layers' statistics; "
                "create one instance per call site (act_layer())"
            )
    return layers


class Capture:
    """Statistics of one forward: the model input, each activation's output (and input)."""

    def __init__(
        self,
        model: nn.Module,
        layers: list[tuple[str, nn.Module]],
        low: float | None,
        high: float | None,
        *,
        pre_activation: bool = False,
        max_batch: int | None = None,
        bins: int = 0,
    ) -> None:
        self.model, self.layers = model, layers
        self.low, self.high = low, high
        self.pre_activation, self.max_batch, self.bins = pre_activation, max_batch, bins
        self.stats: dict[tuple[str, str], Tensor] = {}  # (kind, name) -> (len(STATS),) on device
        self.hists: dict[tuple[str, str], Tensor] = {}  # (kind, name) -> (5 + bins,) on device

    def rows(self) -> list[tuple[str, str]]:
        """(kind, name) in forward order: ("input", "input"), then ("pre", n)?, ("act", n)."""
        rows = [(INPUT, INPUT)]
        for name, _ in self.layers:
            rows += [("pre", name)] * self.pre_activation + [("act", name)]
        return rows

    @contextmanager
    def hooks(self) -> Iterator[Capture]:
        """Register the hooks; remove them on the way out, even when the forward raises."""
        handles = []
        try:
            handles.append(self.model.register_forward_pre_hook(self._input_hook))
            for name, module in self.layers:
                handles.append(module.register_forward_hook(self._layer_hook(name)))
            yield self
        finally:
            for handle in handles:
                handle.remove()

    def _input_hook(self, _module: nn.Module, args: tuple) -> None:
        self._record((INPUT, INPUT), args[0], None, None)

    def _layer_hook(self, name: str):
        def hook(_module: nn.Module, args: tuple, output: Tensor) -> None:
            if ("act", name) in self.stats:
                raise SharedModuleError(
                    f"activation module {name!r} ran twice in one forward: one module reused "
                    "at two call sites would mix two layers' statistics; create one instance "
                    "per call site (act_layer())"
                )
            if self.pre_activation:
                self._record(("pre", name), args[0], None, None)
            self._record(("act", name), output, self.low, self.high)

        return hook

    @torch.no_grad()
    def _record(
        self, key: tuple[str, str], y: Tensor, low: float | None, high: float | None
    ) -> None:
        y = y[: self.max_batch]  # a view: the first max_batch examples
        self.stats[key] = tensor_stats(y, low, high)
        if self.bins:
            self.hists[key] = tensor_histogram(y, self.bins)

    def stacked(self) -> Tensor:
        """(rows, len(STATS)) on the device; NaN for a layer the forward did not reach."""
        missing = torch.full((len(STATS),), math.nan)
        device = next(iter(self.stats.values())).device if self.stats else None
        return torch.stack([self.stats.get(row, missing.to(device)) for row in self.rows()])


# --- the monitor the training loop calls -------------------------------------------------------


class Monitor:
    """Activation, gradient and update statistics at step 0 and every `stats.every` steps."""

    def __init__(
        self, model: nn.Module, cfg: DictConfig, writer: Any = None, *, max_batch: int | None = None
    ) -> None:
        self.model, self.writer = model, writer
        self.every, self.histogram_every = cfg.stats.every, cfg.stats.histogram_every
        self.pre_activation = cfg.stats.pre_activation
        self.max_batch = max_batch or cfg.stats.max_batch
        act = cfg.activation
        self.activation, self.can_die = act.name, act.can_die
        self.low, self.high = act.saturation_low, act.saturation_high
        self.layers = hooked_layers(model)
        self.layer_names = [name for name, _ in self.layers]
        self.weights = [(f"{name}.weight", layer.weight) for name, layer in affine_layers(model)]
        self.weight_names = [name for name, _ in self.weights]
        self.first: diagnostics.Snapshot | None = None  # the capture at step 0
        self.last: diagnostics.Snapshot | None = None  # the latest capture
        self.last_hists: dict[tuple[str, str], list[float]] = {}
        self._capture: Capture | None = None
        self._weight_stats: Tensor | None = None  # (weights, 3): std, norm, grad norm
        self._before: list[Tensor] = []  # weights before the step, on capture steps only
        if writer is not None:
            tb.add_multiline_layout(writer, self.charts())

    def charts(self) -> dict[str, dict[str, list[str]]]:
        """Every scalar tag this monitor writes, one chart per statistic (custom scalars)."""
        acts = {
            f"act_{s}": [f"act_{s}/{INPUT}"] * (s in INPUT_STATS)
            + [f"act_{s}/{name}" for name in self.layer_names]
            for s in STATS
        }
        charts = {"activations": acts}
        if self.pre_activation:
            charts["pre-activations"] = {
                f"pre_{s}": [f"pre_{s}/{name}" for name in self.layer_names] for s in PRE_STATS
            }
        charts["weights"] = {s: [f"{s}/{name}" for name in self.weight_names] for s in WEIGHT_STATS}
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
        )
        return self._capture.hooks()

    @torch.no_grad()
    def after_backward(self, step: int) -> None:
        """Weight std and gradient norm; snapshot the weights for the update ratio."""
        if self._capture is None or not self.capturing(step):
            return
        zero = torch.zeros(())
        self._weight_stats = torch.stack([
            torch.stack([w.std(), w.norm(), w.grad.norm() if w.grad is not None else zero.to(w.device)])
            for _, w in self.weights])  # fmt: skip
        self._before = [w.detach().clone() for _, w in self.weights]

    @torch.no_grad()
    def after_step(self, step: int) -> None:
        """Update-to-weight ratio of the step just taken, then log the whole capture."""
        if self._capture is None or not self.capturing(step) or not self._before:
            return
        ratios = torch.stack(
            [
                (w - b).norm() / b.norm()
                for (_, w), b in zip(self.weights, self._before, strict=True)
            ]
        )
        self._before = []
        self.flush(step, ratios)

    def flush(self, step: int, update_ratios: Tensor | None = None) -> None:
        """Move the capture to the CPU in one copy, log it and keep it as a Snapshot.

        The probe calls this directly after backward: no step taken, no update ratio.
        """
        capture, self._capture = self._capture, None
        if capture is None:
            return
        acts = capture.stacked()  # (rows, len(STATS))
        device = acts.device
        weights = self._weight_stats
        if weights is None:
            weights = torch.full((len(self.weights), 3), math.nan, device=device)
        if update_ratios is None:
            update_ratios = torch.full((len(self.weights),), math.nan, device=device)
        weights = torch.cat([weights.to(device), update_ratios.to(device)[:, None]], dim=1)
        hist_rows = [row for row in capture.rows() if row in capture.hists]
        parts = [acts.flatten(), weights.flatten()] + [capture.hists[row] for row in hist_rows]
        flat = torch.cat(parts).cpu().tolist()  # the one device-to-host copy of this capture
        n_acts, n_weights = acts.numel(), weights.numel()
        act_values, weight_values = flat[:n_acts], flat[n_acts : n_acts + n_weights]
        width = len(HIST_HEAD) + capture.bins
        hist_flat = flat[n_acts + n_weights :]
        self.last_hists = {
            row: hist_flat[i * width : (i + 1) * width] for i, row in enumerate(hist_rows)
        }
        self._weight_stats = None
        snap = diagnostics.Snapshot(step=step, activation=self.activation, can_die=self.can_die)
        for i, (kind, name) in enumerate(capture.rows()):
            row = dict(zip(STATS, act_values[i * len(STATS) : (i + 1) * len(STATS)], strict=True))
            {INPUT: snap.inputs, "pre": snap.pre, "act": snap.acts}[kind][name] = row
        for i, name in enumerate(self.weight_names):
            values = weight_values[i * len(WEIGHT_ROW) : (i + 1) * len(WEIGHT_ROW)]
            snap.weights[name] = dict(zip(WEIGHT_ROW, values, strict=True))
        if self.first is None:
            self.first = snap
        self.last = snap
        if self.writer is not None:
            log_snapshot(self.writer, snap)
            for (kind, name), hist in self.last_hists.items():
                log_histogram(
                    self.writer, f"{'pre' if kind == 'pre' else 'act'}_hist/{name}", hist, step
                )

    def summary_metrics(self) -> dict[str, Any]:
        return diagnostics.summary_metrics(self.first, self.last)

    def diagnostics(self) -> list[str]:
        return diagnostics.diagnose(self.first, self.last)


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
    summary = Summary(value=[Summary.Value(tag=tag, simple_value=value) for tag, value in values])
    writer.file_writer.add_summary(summary, snap.step)


def log_histogram(writer: Any, tag: str, hist: list[float], step: int) -> None:
    """A histogram reduced on the device (min, max, num, sum, sum_squares, counts...)."""
    lo, hi, num, total, squares = hist[: len(HIST_HEAD)]
    counts = hist[len(HIST_HEAD) :]
    if num < 1:  # every value was non-finite: nothing to draw (the count is in act_nonfinite)
        return
    width = max((hi - lo) / len(counts), 1e-30)
    limits = [lo + width * (i + 1) for i in range(len(counts))]
    writer.add_histogram_raw(tag, lo, hi, num, total, squares, limits, counts, step)
