"""Per-layer statistics during training: what the lecture watches inside the network.

Interface used by train.py:
    monitor = Monitor(model, cfg, writer)
    with monitor.capture(step): logits = model(x)   # hooks exist only on capture steps
    monitor.after_backward(step); optimizer.step(); monitor.after_step(step)
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
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from typing import Any

import torch
from omegaconf import DictConfig
from tensorboard.compat.proto.summary_pb2 import Summary
from torch import Tensor, nn

from trainlab import diagnostics, tb
from trainlab.models import activation_layers, affine_layers

STATS = ("mean", "std", "saturated", "zeros", "dead", "nonfinite")  # one capture of one layer
RAW = 6  # numbers per layer reduced on the device (raw_stats), finished on the host
WEIGHT_STATS = ("weight_std", "grad_norm", "update_ratio")  # logged (a Snapshot adds weight_norm)
INPUT_STATS = ("mean", "std", "nonfinite")  # logged for the model input (saturation, death: n/a)
PRE_STATS = ("mean", "std", "nonfinite")  # logged for the input of each nonlinearity
HIST_HEAD = ("min", "max", "num", "sum", "sum_squares")  # then `bins` counts
BINS = 64
INPUT = "input"


class SharedModuleError(ValueError):
    """One activation module called at two places: its statistics would mix two layers."""


# --- reductions on the device (no host sync) -------------------------------------------------


def raw_stats(y: Tensor, low: float | None = None, high: float | None = None) -> Tensor:
    """(RAW,) on y's device, no host sync: what finish_stats turns into STATS.

    Non-finite values become 0 stand-ins (a histogram would drop them silently); they are
    counted, and finish_stats takes them out of every other statistic. Only reductions run
    here, no scalar arithmetic: on small tensors each op costs its launch.
    """
    y = y.detach().float()
    yf = y.nan_to_num(0.0, 0.0, 0.0)
    shift = yf.mean()  # the mean of all slots: centres the sum of squares (exact for tiny stds)
    saturated = [torch.count_nonzero(yf <= low)] if low is not None else []
    saturated += [torch.count_nonzero(yf >= high)] if high is not None else []
    unit_dims = [d for d in range(y.dim()) if d != 1]  # units: dim 1 (features or channels)
    return torch.stack([
        shift,
        torch.linalg.vector_norm(yf - shift),
        sum(saturated) if saturated else torch.zeros((), device=y.device),
        torch.count_nonzero(yf),
        torch.count_nonzero(y.abs().amax(dim=unit_dims)),  # units not 0 everywhere (NaN: alive)
        torch.count_nonzero(y - y),  # NaN exactly where y is inf or NaN
    ]).float()  # fmt: skip


def finish_stats(
    raw: Sequence[float], numel: int, units: int, zero_saturates: bool = False
) -> dict[str, float]:
    """STATS of the finite values from raw_stats' numbers (on the host).

    A unit (feature, or channel of an image) is dead when it is exactly 0 at every example
    and position. `zero_saturates`: the 0 stand-ins of non-finite values were counted as
    saturated (a threshold like sigmoid's y <= 0.01 includes 0).
    """
    shift, norm, saturated, nonzero, alive, nonfinite = raw
    n = numel - nonfinite
    count = max(n, 1)
    mean = shift * numel / count
    squares = norm**2 - nonfinite * shift**2 - n * (mean - shift) ** 2  # over the finite values
    return {
        "mean": mean,
        "std": math.sqrt(max(squares, 0.0) / count),
        "saturated": (saturated - nonfinite * zero_saturates) / count,
        "zeros": (n - nonzero) / count,
        "dead": 1.0 - alive / units,
        "nonfinite": nonfinite,
    }  # fmt: skip


def tensor_stats(
    y: Tensor, low: float | None = None, high: float | None = None
) -> dict[str, float]:
    """STATS of one tensor (one host sync: for tests and one-off looks)."""
    return finish_stats(
        raw_stats(y, low, high).tolist(), y.numel(), _units(y), _zero_saturates(low, high)
    )


def _units(y: Tensor) -> int:
    return y.shape[1] if y.dim() > 1 else 1


def _zero_saturates(low: float | None, high: float | None) -> bool:
    return (low is not None and low >= 0) or (high is not None and high <= 0)


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
        self.stats: dict[tuple[str, str], Tensor] = {}  # (kind, name) -> (RAW,) on device
        self.shapes: dict[tuple[str, str], tuple[int, int, bool]] = {}  # for finish_stats
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

    def _record(
        self, key: tuple[str, str], y: Tensor, low: float | None, high: float | None
    ) -> None:
        y = y.detach()[: self.max_batch]  # a view: the first max_batch examples
        self.stats[key] = raw_stats(y, low, high)
        self.shapes[key] = (y.numel(), _units(y), _zero_saturates(low, high))
        if self.bins:
            self.hists[key] = tensor_histogram(y, self.bins)

    def stacked(self) -> Tensor:
        """(rows, RAW) on the device; NaN for a layer the forward did not reach."""
        device = next(iter(self.stats.values())).device if self.stats else None
        missing = torch.full((RAW,), math.nan, device=device)
        return torch.stack([self.stats.get(row, missing) for row in self.rows()])

    def finish(self, values: list[float]) -> list[dict[str, float]]:
        """stacked(), copied to the host as a flat list -> one STATS dict per row."""
        return [
            finish_stats(values[i * RAW : (i + 1) * RAW], *self.shapes.get(row, (1, 1, False)))
            for i, row in enumerate(self.rows())
        ]


# --- the monitor the training loop calls -------------------------------------------------------


class Monitor:
    """Activation, gradient and update statistics at step 0 and every `stats.every` steps."""

    def __init__(
        self,
        model: nn.Module,
        cfg: DictConfig,
        writer: Any = None,
        *,
        max_batch: int | None = None,
        layout: bool = True,  # False: a resumed run's events already hold the chart layout
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
        self.weights = [  # frozen layers (transfer) have no gradient or update to measure
            (f"{name}.weight", layer.weight)
            for name, layer in affine_layers(model)
            if layer.weight.requires_grad
        ]
        self.weight_names = [name for name, _ in self.weights]
        self.first: diagnostics.Snapshot | None = None  # the capture at step 0
        self.last: diagnostics.Snapshot | None = None  # the latest capture
        self.last_hists: dict[tuple[str, str], list[float]] = {}
        self._capture: Capture | None = None
        self._weight_stats: Tensor | None = None  # (weights, 3): std, norm, grad norm
        self._before: list[Tensor] = []  # weights before the step, on capture steps only
        if writer is not None and layout:
            tb.add_multiline_layout(writer, self.charts())

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
        )
        return self._capture.hooks()

    def after_backward(self, step: int) -> None:
        """Weight std, weight norm, gradient norm; snapshot the weights for the update ratio.

        No torch.no_grad() here or in after_step: every tensor is detached, and the decorator
        would cost more than the early return on the steps that capture nothing.
        """
        if self._capture is None or not self.capturing(step):
            return
        weights = [w.detach() for _, w in self.weights]
        grads = [w.grad if w.grad is not None else torch.zeros_like(w) for _, w in self.weights]
        self._weight_stats = torch.stack(
            [
                torch.stack([w.std() for w in weights]),
                torch.stack(torch._foreach_norm(weights)),  # one fused call for all tensors
                torch.stack(torch._foreach_norm(grads)),
            ],
            dim=1,
        )  # fmt: skip (weights, 3)
        self._before = [w.clone() for w in weights]

    def after_step(self, step: int) -> None:
        """||w_after - w_before|| of the step just taken, then log the whole capture."""
        if self._capture is None or not self.capturing(step) or not self._before:
            return
        self.flush(step, self.update_norms())

    def update_norms(self) -> Tensor:
        """(weights,) ||w_after - w_before|| on the device; releases the snapshot."""
        after = [w.detach() for _, w in self.weights]
        norms = torch.stack(torch._foreach_norm(torch._foreach_sub(after, self._before)))
        self._before = []
        return norms

    def flush(self, step: int, update_norms: Tensor | None = None) -> None:
        """Move the capture to the CPU in one copy, log it and keep it as a Snapshot.

        The probe calls this directly after backward: no step taken, no update ratio.
        """
        capture, self._capture = self._capture, None
        if capture is None:
            return
        acts = capture.stacked()  # (rows, RAW)
        weights = self._weight_stats
        if weights is None:
            weights = torch.full((len(self.weights), 3), math.nan, device=acts.device)
        if update_norms is None:
            update_norms = torch.full((len(self.weights),), math.nan, device=acts.device)
        hist_rows = [row for row in capture.rows() if row in capture.hists]
        parts = [acts.flatten(), weights.flatten(), update_norms]
        parts += [capture.hists[row] for row in hist_rows]
        flat = torch.cat(parts).cpu().tolist()  # the one device-to-host copy of this capture
        self._weight_stats = None
        snap = self._snapshot(step, capture, flat[: acts.numel()], flat[acts.numel() :])
        offset = acts.numel() + weights.numel() + update_norms.numel()
        width = len(HIST_HEAD) + capture.bins
        self.last_hists = {row: flat[offset + i * width:offset + (i + 1) * width]
                           for i, row in enumerate(hist_rows)}  # fmt: skip
        if self.first is None:
            self.first = snap
        self.last = snap
        if self.writer is not None:
            log_snapshot(self.writer, snap)
            for (kind, name), hist in self.last_hists.items():
                log_histogram(self.writer, f"{'pre' if kind == 'pre' else 'act'}_hist/{name}",
                              hist, step)  # fmt: skip

    def _snapshot(
        self, step: int, capture: Capture, acts: list[float], weights: list[float]
    ) -> diagnostics.Snapshot:
        snap = diagnostics.Snapshot(step=step, activation=self.activation, can_die=self.can_die)
        tables = {INPUT: snap.inputs, "pre": snap.pre, "act": snap.acts}
        for (kind, name), row in zip(capture.rows(), capture.finish(acts), strict=True):
            tables[kind][name] = row
        n = len(self.weights)
        for i, name in enumerate(self.weight_names):
            std, norm, grad = weights[3 * i : 3 * i + 3]
            ratio = weights[3 * n + i] / norm if norm else math.nan  # of the step just taken
            snap.weights[name] = {"weight_std": std, "weight_norm": norm, "grad_norm": grad,
                                  "update_ratio": ratio}  # fmt: skip
        return snap

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
