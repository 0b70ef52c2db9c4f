"""Hooks that live for one forward and reduce each activation layer's output (and input).

Capture registers a forward pre-hook on the model (its input) and a forward hook on every
activation layer; each hook reduces the first `max_batch` examples to raw_stats (and a
histogram when asked) on the device. hooked_layers rejects a module used at two call sites.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from trainlab.models import activation_layers
from trainlab.stats_reduce import (
    INPUT,
    RAW,
    count_units,
    finish_stats,
    member_histograms,
    member_raw_stats,
    saturates_at_zero,
)


class SharedModuleError(ValueError):
    """One activation module called at two places: its statistics would mix two layers."""


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
        low: Bound,
        high: Bound,
        *,
        pre_activation: bool = False,
        max_batch: int | None = None,
        bins: int = 0,
        members: int = 0,
    ) -> None:
        self.model, self.layers = model, layers
        self.low, self.high = low, high
        self.pre_activation, self.max_batch, self.bins = pre_activation, max_batch, bins
        self.members = members  # K: a fused model's tensors carry K members first (K, B, ...)
        self.stats: dict[tuple[str, str], Tensor] = {}  # (kind, name) -> (M, RAW) on device
        self.shapes: dict[tuple[str, str], tuple[int, int, bool]] = {}  # for finish_stats
        self.hists: dict[tuple[str, str], Tensor] = {}  # (kind, name) -> (M, 5 + bins)

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

    def _record(self, key: tuple[str, str], y: Tensor, low: Bound, high: Bound) -> None:
        """`low`/`high`: a saturation bound, or a tuple of each member's (their activations
        differ)."""
        y = y.detach()  # then views: each member's first max_batch examples
        y = y[:, : self.max_batch] if self.members else y[: self.max_batch].unsqueeze(0)
        if isinstance(low, tuple):
            self.stats[key] = member_raw_stats(
                y, _column(low, -math.inf, y), _column(high, math.inf, y)
            )
            zero = tuple(saturates_at_zero(lo, hi) for lo, hi in zip(low, high, strict=True))
        else:
            self.stats[key] = member_raw_stats(y, low, high)
            zero = saturates_at_zero(low, high)
        self.shapes[key] = (y[0].numel(), count_units(y[0]), zero)
        if self.bins:
            self.hists[key] = member_histograms(y, self.bins)

    def stacked(self) -> Tensor:
        """(rows, M, RAW) on the device (M = 1 unfused); NaN for a layer not reached."""
        device = next(iter(self.stats.values())).device if self.stats else None
        missing = torch.full((max(self.members, 1), RAW), math.nan, device=device)
        return torch.stack([self.stats.get(row, missing) for row in self.rows()])

    def finish(self, values: list[float], k: int = 0) -> list[dict[str, float]]:
        """Member k's stacked() rows, copied to the host as a flat list -> a STATS dict per row."""
        out = []
        for i, row in enumerate(self.rows()):
            numel, units, zero = self.shapes.get(row, (1, 1, False))
            zero = zero[k] if isinstance(zero, tuple) else zero
            out.append(finish_stats(values[i * RAW : (i + 1) * RAW], numel, units, zero))
        return out


Bound = float | None | tuple


def _column(bounds: tuple, missing: float, y: Tensor) -> Tensor:
    """Each member's bound as a (K, 1) column (`missing` where it has none: never crossed)."""
    values = [missing if b is None else b for b in bounds]
    return torch.tensor(values, device=y.device).view(-1, 1)
