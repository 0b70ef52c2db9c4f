"""Reductions of one tensor to a few statistics, on its device (no host sync until finished).

raw_stats -> (RAW,) numbers per layer on the device; finish_stats turns them into STATS on
the host; tensor_histogram is TensorBoard's raw histogram reduced on the device. Used by the
capture hooks (stats_capture) and the monitor (stats).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import partial

import torch
from torch import Tensor

STATS = ("mean", "std", "saturated", "zeros", "dead", "nonfinite")  # one capture of one layer
RAW = 6  # numbers per layer reduced on the device (raw_stats), finished on the host
HIST_HEAD = ("min", "max", "num", "sum", "sum_squares")  # then `bins` counts
BINS = 64
INPUT = "input"


def raw_stats(y: Tensor, low: float | None = None, high: float | None = None) -> Tensor:
    """(RAW,) on y's device, no host sync: what finish_stats turns into STATS."""
    return member_raw_stats(y.unsqueeze(0), low, high)[0]


def member_raw_stats(y: Tensor, low: float | None = None, high: float | None = None) -> Tensor:
    """(M, RAW) for y (M, B, ...): raw_stats of every member y[m], in one set of reductions.

    Non-finite values become 0 stand-ins (a histogram would drop them silently); they are
    counted, and finish_stats takes them out of every other statistic. Only reductions run
    here, no scalar arithmetic, and every count is a float (the L0 norm along dim 1: 3-8x
    cheaper than count_nonzero along a dim, and stacking mixed dtypes costs as much again):
    on small tensors each op costs its launch. A fused model's
    tensors carry its members first; an ordinary model's is one member (y.unsqueeze(0)).
    """
    y = y.detach().float()
    if y.dim() == 2:  # (M, B): one unit per member
        y = y.unsqueeze(2)
    flat = y.reshape(len(y), -1)
    yf = flat.nan_to_num(0.0, 0.0, 0.0)
    count = partial(torch.linalg.vector_norm, ord=0, dim=1)  # nonzero (and NaN) entries per row
    shift = yf.mean(1, keepdim=True)  # the mean of all slots: centres the sum of squares
    saturated = torch.zeros(len(y), device=y.device)
    if low is not None:
        saturated = saturated + count((yf <= low).float())
    if high is not None:
        saturated = saturated + count((yf >= high).float())
    unit_dims = [d for d in range(1, y.dim()) if d != 2]  # units: dim 2 (features, channels)
    return torch.stack([
        shift[:, 0],
        torch.linalg.vector_norm(yf - shift, dim=1),
        saturated,
        count(yf),
        count(y.abs().amax(dim=unit_dims)),  # units not 0 everywhere (NaN: alive)
        count(flat - flat),  # NaN exactly where y is inf or NaN
    ], dim=1)  # fmt: skip


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
        raw_stats(y, low, high).tolist(), y.numel(), count_units(y), saturates_at_zero(low, high)
    )


def count_units(y: Tensor) -> int:
    return y.shape[1] if y.dim() > 1 else 1


def saturates_at_zero(low: float | None, high: float | None) -> bool:
    return (low is not None and low >= 0) or (high is not None and high <= 0)


def tensor_histogram(y: Tensor, bins: int = BINS) -> Tensor:
    """(5 + bins,) on y's device: min, max, count, sum, sum of squares, then equal-width counts
    between min and max, of the finite values only (TensorBoard's raw histogram)."""
    return member_histograms(y.unsqueeze(0), bins)[0]


def member_histograms(y: Tensor, bins: int = BINS) -> Tensor:
    """(M, 5 + bins): tensor_histogram of every member y[m] of y (M, B, ...) at once."""
    y = y.detach().float().reshape(len(y), -1)
    finite = torch.isfinite(y)
    big = torch.finfo(torch.float32).max
    lo = torch.where(finite, y, big).amin(1, keepdim=True)
    hi = torch.where(finite, y, -big).amax(1, keepdim=True)
    yf = torch.where(finite, y, lo)
    width = ((hi - lo) / bins).clamp(min=1e-30)
    idx = ((yf - lo) / width).nan_to_num(0.0).clamp(0, bins - 1).long()
    weight = finite.float()
    counts = torch.zeros(len(y), bins, device=y.device).scatter_add_(1, idx, weight)
    sums = [weight.sum(1), (yf * weight).sum(1), (yf.square() * weight).sum(1)]
    head = torch.stack([lo[:, 0], hi[:, 0], *sums], dim=1)
    return torch.cat([head, counts], dim=1)
