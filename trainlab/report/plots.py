"""Matplotlib figures of a sweep: learning curves per group, the metric against swept values.

Every figure of one compare is drawn by one `Painter` (matplotlib imported and set up once, no
pyplot and no global state). Axis labels are words (`words`); loss curves use a log axis so one
diverging group does not flatten the others; a group with diverged seeds is marked, never
dropped: an x where each diverged seed's curve ends, its count in the legend, and a group with
no finite point at all still gets a legend entry that says so.
"""

from __future__ import annotations

import functools
import io
import math
import os
import pickle
import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from itertools import pairwise
from pathlib import Path
from typing import Any

from trainlab.io import atomic_write_bytes
from trainlab.sweep import (
    Comparison,
    Group,
    group_label,
    mean_curves,
    numeric_swept_keys,
    safe_name,
)

PLOT_CURVES = ("val_acc", "train_loss")
WORDS = {
    "epoch": "epoch",
    "val_acc": "validation accuracy",
    "best_val_acc": "best validation accuracy",
    "test_acc": "test accuracy",
    "train_acc": "training accuracy",
    "train_loss": "training loss",
    "val_loss": "validation loss",
    "steps_to_target": "steps to the target training error",
    "seconds_to_target": "seconds to the target training error",
    "wall_time_s": "wall time (seconds)",
    "ensemble_gain": "accuracy gain of the ensemble",
    "optimizer.lr": "learning rate",
    "optimizer.momentum": "momentum",
    "regularizer.weight_decay": "weight decay",
    "init.weight.std": "initial weight std",
    "trainer.batch_size": "batch size",
    "trainer.epochs": "epochs",
    "model.depth": "depth (layers)",
    "model.width": "width (units per layer)",
    "data.subset": "training examples",
}
LEGEND_CHARS = 78  # what fits beside the axes of a 13-inch figure in the small font
DIVERGED_MARK = {"marker": "x", "markersize": 9, "markeredgewidth": 2, "linestyle": "none"}


def words(key: str) -> str:
    """'optimizer.lr' -> 'learning rate (optimizer.lr)'; a metric: its words only."""
    if key in WORDS:
        return WORDS[key] if "." not in key else f"{WORDS[key]} ({key})"
    return key.replace("_", " ")


def write_plots(result: Comparison, plot_dir: Path) -> list[Path]:
    plot_dir.mkdir(parents=True, exist_ok=True)
    painter = Painter()
    figures = [functools.partial(_curves, painter, result, key, plot_dir) for key in PLOT_CURVES]
    figures += [
        functools.partial(painter.vs_param, result, key, plot_dir)
        for key in numeric_swept_keys(result.groups)
    ]
    written = [path for path in in_two_processes(figures) if path is not None]
    for old in set(plot_dir.glob("*.png")) - set(written):  # an earlier compare's, once the
        old.unlink(missing_ok=True)  # new ones exist (a full disk keeps the old; two at once agree)
    return written


def _curves(painter: Painter, result: Comparison, key: str, plot_dir: Path) -> Path | None:
    fig = painter.curves(result, key)
    return _save(fig, plot_dir / f"curves_{key}.png") if fig else None


def in_two_processes(tasks: Sequence[Callable[[], Any]]) -> list[Any]:
    """[task() for task in tasks], every second task run in a forked child while this process
    runs the others: a compare's figures are drawn on two cores (each figure is drawn and
    saved by the same code, so the PNGs are the same bytes). Where a child cannot be forked
    (one core, no fork) or it fails, this process runs its tasks too (and raises their error)."""
    if len(tasks) < 2 or not hasattr(os, "fork") or len(os.sched_getaffinity(0)) < 2:
        return [task() for task in tasks]
    theirs = range(1, len(tasks), 2)
    read, write = os.pipe()
    try:
        pid = os.fork()
    except OSError:
        os.close(read)
        os.close(write)
        return [task() for task in tasks]
    if pid == 0:  # the child: its tasks' results back through the pipe, then gone
        os.close(read)
        code = 1
        try:
            with os.fdopen(write, "wb") as out:
                pickle.dump([tasks[i]() for i in theirs], out)
            code = 0
        finally:
            os._exit(code)  # no atexit handlers, no flush of the parent's buffers
    os.close(write)
    results: list[Any] = [None] * len(tasks)
    try:
        for i in range(0, len(tasks), 2):
            results[i] = tasks[i]()
    finally:
        with os.fdopen(read, "rb") as src:
            data = src.read()
        _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) == 0:
        for i, value in zip(theirs, pickle.loads(data), strict=True):
            results[i] = value
    else:  # the child failed: its tasks again here
        for i in theirs:
            results[i] = tasks[i]()
    return results


def warm_up() -> None:
    """One small figure drawn and thrown away: matplotlib imported, fonts and the log axis's
    tick-label parser loaded (trainlab.compare_worker does it while a sweep trains)."""
    painter = Painter()
    fig, ax = painter.figure()
    ax.plot([1, 2], [0.5, 0.05], color=painter.colors(1)[0], label="warm-up")
    painter.log_scale(ax, "y")
    ax.set(xlabel="epoch", ylabel="loss")
    _title(ax, "warm-up")
    _legend(fig, ax, 1)
    fig.savefig(io.BytesIO(), format="png", dpi=100)


class Painter:
    """matplotlib's Figure and colour maps, imported once per compare."""

    def __init__(self) -> None:
        from matplotlib import colormaps
        from matplotlib.figure import Figure  # no pyplot: no global state, Agg when saving
        from matplotlib.ticker import LogFormatterSciNotation

        class PlainLogFormatter(LogFormatterSciNotation):
            """matplotlib's log tick labels (10⁻¹, 2×10⁻¹) as plain text, not math text: a
            figure's renderer parses every math-text label anew (pyparsing), which took a
            third of a log-axis plot's drawing time."""

            def __call__(self, x, pos=None) -> str:
                return plain_math(super().__call__(x, pos))

        self.Figure, self.colormaps, self.log_formatter = Figure, colormaps, PlainLogFormatter

    def log_scale(self, ax, which: str) -> None:
        """A log scale on ax's `which` ("x" or "y") axis, with plain-text tick labels."""
        getattr(ax, f"set_{which}scale")("log")
        axis = getattr(ax, f"{which}axis")
        axis.set_major_formatter(self.log_formatter(10))
        axis.set_minor_formatter(self.log_formatter(10, labelOnlyBase=False))

    def figure(self):
        """Fixed margins, not constrained layout: that layout engine measured 40% of the plots'
        time (scripts/bench_report.py); labels and legends are sized to fit instead."""
        fig = self.Figure(figsize=(8, 5))
        fig.subplots_adjust(left=0.1, right=0.97, bottom=0.11, top=0.92)
        return fig, fig.add_subplot()

    def colors(self, n: int) -> list:
        cmap = self.colormaps["tab10" if n <= 10 else "tab20"]
        return [cmap(i % cmap.N) for i in range(n)]

    def curves(self, result: Comparison, key: str):
        """Mean ± std (shaded) of one history key against the epoch, one line per group; a log
        axis for losses; an x where a diverged seed's curve ends."""
        log = key.endswith("loss")
        fig, ax = self.figure()
        drawn, entries, clipped, marked = 0, 0, False, False
        for g, color in zip(result.groups, self.colors(len(result.groups)), strict=True):
            points = mean_curves(g)[key]
            label = _legend_label(g, result.groups) + _diverged_note(g)
            if not points:
                if g.count("diverged"):  # marked, not silently dropped
                    ax.plot([], [], color=color, label=f"{label}: no finite value", **DIVERGED_MARK)
                    entries += 1
                continue
            epochs, _, mean, std, n = zip(*points, strict=True)
            lo = [m - s for m, s in zip(mean, std, strict=True)]
            if log:  # a band below 0 has no place on a log axis
                clipped |= any(v <= m / 10 for v, m in zip(lo, mean, strict=True))
                lo = [max(v, m / 10) for v, m in zip(lo, mean, strict=True)]
            hi = [m + s for m, s in zip(mean, std, strict=True)]
            ax.plot(epochs, mean, color=color, label=f"{label} (n={max(n)})")
            ax.fill_between(epochs, lo, hi, color=color, alpha=0.2, linewidth=0)
            ends = _diverged_ends(g, key)
            if ends:
                ax.plot(*zip(*ends, strict=True), color=color, **DIVERGED_MARK)
                marked = True
            drawn, entries = drawn + 1, entries + 1
        if not drawn:
            return None
        if log and all(m > 0 for line in ax.get_lines() for m in line.get_ydata()):
            self.log_scale(ax, "y")
        band = "mean ± std over seeds" + (", band cut at mean/10" if log and clipped else "")
        marks = "; x: a diverged seed's last epoch" if marked else ""
        ylabel = words(key) + (" (log scale)" if ax.get_yscale() == "log" else "")
        ax.set(xlabel="epoch", ylabel=ylabel)
        _title(ax, f"{words(key)}: {band}{marks}")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
        _legend(fig, ax, entries)
        return fig

    def vs_param(self, result: Comparison, key: str, plot_dir: Path) -> Path:
        """The ranking metric (mean ± std) against one numeric override, one line per value of
        the other overrides; a scatter when no line has two points (e.g. random search). A group
        with diverged seeds is ringed in red; one with no finite mean is a red triangle on top."""
        metric = result.rank_by
        lines: dict[str, list[tuple[float, float, float]]] = defaultdict(list)
        rings, lost = [], []
        for g in result.groups:
            if key not in g.params:
                continue
            st, x = g.stat(metric), float(g.params[key])
            if not st.finite:
                lost += [x] if g.count("diverged") else []
                continue
            others = {k: v for k, v in g.params.items() if k != key}
            std = st.std if math.isfinite(st.std) else 0.0
            lines[group_label(others) if others else "all"].append((x, st.mean, std))
            rings += [(x, st.mean)] if g.count("diverged") else []
        fig, ax = self.figure()
        scatter = all(len(pts) < 2 for pts in lines.values())
        for (label, pts), color in zip(sorted(lines.items()), self.colors(len(lines)), strict=True):
            x, y, err = zip(*sorted(pts), strict=True)
            style = (
                {"color": "C0", "fmt": "o"}
                if scatter
                else {"color": color, "fmt": "o-", "label": label}
            )
            ax.errorbar(x, y, yerr=err, capsize=3, **style)
        if rings:
            ring = {"marker": "o", "markersize": 14, "mfc": "none", "mec": "red", "ls": "none"}
            ax.plot(*zip(*rings, strict=True), label="has diverged seeds", **ring)
        if lost:
            ax.plot(lost, [0.97] * len(lost), "^", color="red", transform=ax.get_xaxis_transform(),
                    label="diverged: no finite mean")  # fmt: skip
        xs = [x for pts in lines.values() for x, _, _ in pts] + lost
        if xs and is_log_spaced(xs):
            self.log_scale(ax, "x")
        ylabel = f"{words(metric)} (mean ± std over seeds)"
        ax.set(xlabel=words(key), ylabel=ylabel)
        _title(ax, f"{words(metric)} against {words(key)}")
        ax.grid(alpha=0.3)
        entries = (len(lines) if not scatter else 0) + bool(rings) + bool(lost)
        if entries > 1 or rings or lost:
            _legend(fig, ax, entries)
        return _save(fig, plot_dir / f"{metric}_vs_{safe_name(key)}.png")


SUPERSCRIPT = str.maketrans("0123456789-", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻")


def plain_math(label: str) -> str:
    r"""'$\mathdefault{2\times10^{-1}}$' -> '2×10⁻¹': a log tick label in plain text."""
    math = re.fullmatch(r"\$\\mathdefault\{(.*)\}\$", label)
    if math is None:
        return label
    text = math.group(1).replace("\\times", "×").replace("-", "−")
    return re.sub(
        r"\^\{([^}]*)\}", lambda e: e.group(1).replace("−", "-").translate(SUPERSCRIPT), text
    )


def _title(ax, text: str) -> None:
    """At the top of the axes, where matplotlib's automatic placement puts it when no tick
    labels are above the axes (none here): the same image, without laying out every tick
    label again at each draw to check (a fifth of a plot's drawing time)."""
    ax.set_title(text, y=1.0)


def _diverged_note(g: Group) -> str:
    k = g.count("diverged")
    return f", {k}/{g.n} diverged" if k else ""


def _diverged_ends(g: Group, key: str) -> list[tuple[int, float]]:
    """(epoch, value) of each diverged seed's last finite point of `key`."""
    ends = []
    for job in g.jobs:
        if job.status != "diverged":
            continue
        recs = [
            r for r in (job.history or {}).get("epochs") or []
            if isinstance(r.get(key), (int, float)) and math.isfinite(r[key]) and "epoch" in r
        ]  # fmt: skip
        if recs:
            ends.append((int(recs[-1]["epoch"]), float(recs[-1][key])))
    return ends


def _legend(fig, ax, entries: int) -> None:
    """In the axes for a few lines; beside them, on a wider figure, for many (a label longer
    than LEGEND_CHARS is cut with '…': the tables hold the full names)."""
    for handle in ax.get_lines() + ax.containers + ax.collections:
        label = handle.get_label()
        if len(label) > LEGEND_CHARS and not label.startswith("_"):
            handle.set_label(label[: LEGEND_CHARS - 1] + "…")
    if entries > 6:
        fig.set_size_inches(13, 6)
        fig.subplots_adjust(left=0.065, right=0.6, bottom=0.1, top=0.93)
        fig.legend(fontsize="small", loc="upper left", bbox_to_anchor=(0.61, 0.93))
    else:
        ax.legend(fontsize="small")


def _legend_label(group: Group, groups: Sequence[Group]) -> str:
    """The group's label without the overrides every group shares."""
    common = {k: v for k, v in group.params.items() if all(g.params.get(k) == v for g in groups)}
    rest = {k: v for k, v in group.params.items() if k not in common}
    return group_label(rest) if rest else group.label


def _save(fig, path: Path) -> Path:
    """The PNG written whole or not at all (a full disk or a concurrent compare: the old stays)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    atomic_write_bytes(path, buf.getvalue())
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
