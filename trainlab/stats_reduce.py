"""Reductions of one tensor to a few statistics, on its device (no host sync until finished).

raw_stats -> (RAW,) numbers per layer on the device; finish_stats turns them into STATS on
the host; tensor_histogram is TensorBoard's raw histogram reduced on the device. Used by the
capture hooks (stats_capture) and the monitor (stats).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

STATS = ("mean", "std", "saturated", "zeros", "dead", "nonfinite")  # one capture of one layer
RAW = 6  # numbers per layer reduced on the device (raw_stats), finished on the host
HIST_HEAD = ("min", "max", "num", "sum", "sum_squares")  # then `bins` counts
BINS = 64
INPUT = "input"


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
        raw_stats(y, low, high).tolist(), y.numel(), count_units(y), saturates_at_zero(low, high)
    )


def count_units(y: Tensor) -> int:
    return y.shape[1] if y.dim() > 1 else 1


def saturates_at_zero(low: float | None, high: float | None) -> bool:
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
