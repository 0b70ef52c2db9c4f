"""Matplotlib figures of a sweep: learning curves per group, the metric against swept values."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from itertools import pairwise
from pathlib import Path

from trainlab.sweep import (
    Comparison,
    Group,
    group_label,
    mean_curves,
    numeric_swept_keys,
    safe_name,
)

PLOT_CURVES = ("val_acc", "train_loss")


def write_plots(result: Comparison, plot_dir: Path) -> list[Path]:
    plot_dir.mkdir(parents=True, exist_ok=True)
    for old in plot_dir.glob("*.png"):
        old.unlink()
    written = [p for key in PLOT_CURVES if (p := plot_curves(result, key, plot_dir))]
    for key in numeric_swept_keys(result.groups):
        written.append(plot_vs_param(result, key, plot_dir))
    return written


def _figure():
    from matplotlib.figure import Figure  # no pyplot: no global state, Agg when saving

    fig = Figure(figsize=(8, 5), layout="constrained")
    return fig, fig.add_subplot()


def _colors(n: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def plot_curves(result: Comparison, key: str, plot_dir: Path) -> Path | None:
    """Mean ± std (shaded) of one history key against the epoch, one line per group."""
    fig, ax = _figure()
    drawn = 0
    for g, color in zip(result.groups, _colors(len(result.groups)), strict=True):
        points = mean_curves(g)[key]
        if not points:
            continue
        epochs, _, mean, std, n = zip(*points, strict=True)
        lo, hi = (
            [m - s for m, s in zip(mean, std, strict=True)],
            [m + s for m, s in zip(mean, std, strict=True)],
        )
        ax.plot(epochs, mean, color=color, label=f"{_legend_label(g, result.groups)} (n={max(n)})")
        ax.fill_between(epochs, lo, hi, color=color, alpha=0.2, linewidth=0)
        drawn += 1
    if not drawn:
        return None
    ax.set(xlabel="epoch", ylabel=key, title=f"{key}: mean ± std over seeds")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    _legend(fig, ax, drawn)
    return _save(fig, plot_dir / f"curves_{key}.png")


def _legend(fig, ax, entries: int) -> None:
    """In the axes for a few lines; beside them, on a wider figure, for many."""
    if entries > 6:
        fig.set_size_inches(13, 6)
        fig.legend(fontsize="small", loc="outside right upper")
    else:
        ax.legend(fontsize="small")


def _legend_label(group: Group, groups: Sequence[Group]) -> str:
    """The group's label without the overrides every group shares."""
    common = {k: v for k, v in group.params.items() if all(g.params.get(k) == v for g in groups)}
    rest = {k: v for k, v in group.params.items() if k not in common}
    return group_label(rest) if rest else group.label


def _save(fig, path: Path) -> Path:
    fig.savefig(path, dpi=100)
    return path


def is_log_spaced(values: Sequence[float]) -> bool:
    """All > 0 and either spanning >= 100x, or (3+ values) with a roughly constant ratio >= 1.5."""
    vs = sorted(set(values))
    if len(vs) < 2 or vs[0] <= 0:
        return False
    if vs[-1] / vs[0] >= 100:
        return True
    ratios = [b / a for a, b in pairwise(vs)]
    return len(vs) >= 3 and min(ratios) >= 1.5 and max(ratios) / min(ratios) < 1.25


def plot_vs_param(result: Comparison, key: str, plot_dir: Path) -> Path:
    """The ranking metric (mean ± std) against one numeric override, one line per value of the
    other overrides; a scatter when no line has two points (e.g. random search)."""
    metric = result.rank_by
    lines: dict[str, list[tuple[float, float, float]]] = defaultdict(list)
    for g in result.groups:
        st = g.stat(metric)
        if key in g.params and st.finite:
            others = {k: v for k, v in g.params.items() if k != key}
            std = st.std if math.isfinite(st.std) else 0.0
            lines[group_label(others) if others else "all"].append(
                (float(g.params[key]), st.mean, std)
            )
    fig, ax = _figure()
    scatter = all(len(pts) < 2 for pts in lines.values())
    for (label, pts), color in zip(sorted(lines.items()), _colors(len(lines)), strict=True):
        x, y, err = zip(*sorted(pts), strict=True)
        style = (
            {"color": "C0", "fmt": "o"}
            if scatter
            else {"color": color, "fmt": "o-", "label": label}
        )
        ax.errorbar(x, y, yerr=err, capsize=3, **style)
    xs = [x for pts in lines.values() for x, _, _ in pts]
    if xs and is_log_spaced(xs):
        ax.set_xscale("log")
    ax.set(xlabel=key, ylabel=f"{metric} (mean ± std over seeds)", title=f"{metric} vs {key}")
    ax.grid(alpha=0.3)
    if not scatter and len(lines) > 1:
        _legend(fig, ax, len(lines))
    return _save(fig, plot_dir / f"{metric}_vs_{safe_name(key)}.png")
