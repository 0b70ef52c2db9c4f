"""`trainlab probe [overrides]`: the lecture's look inside a network at initialisation.

One batch of up to PROBE_BATCH training examples (the lecture's 1000; the whole training
split when it is smaller), preprocessed but not augmented, goes forward and backward
through the freshly initialised model in training mode (what the first training step
sees: BatchNorm uses the batch's statistics). No optimiser step. The model is built from
the same seed as `trainlab train`, so it is the network training would start from.

Writes into the run directory: probe.json (the input, then every activation layer, in
order), diagnostics.json, TensorBoard events (per-layer scalars and histograms at step 0)
and probe.png (mean and std per layer, one activation histogram per layer).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import nn

from trainlab import diagnostics, tb
from trainlab.io import write_json
from trainlab.models import AFFINE_NAMES
from trainlab.stats import HIST_HEAD, INPUT, Monitor
from trainlab.train import prepare
from trainlab.validate import validate

log = logging.getLogger("trainlab")
PROBE_BATCH = 1000  # examples in the probe's batch: the lecture's 1000 (fewer if the split is)
COLUMNS = ("layer", "activation", "mean", "std", "saturated", "dead", "grad norm")


def probe(cfg: DictConfig, run_dir: str | Path) -> list[dict[str, Any]]:
    """Forward and backward one batch at initialisation; print, save and return the layers."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    validate(cfg)
    _, data, preprocess, model = prepare(cfg)
    x = preprocess(data.train_x[:PROBE_BATCH])  # (B, *in_shape)
    y = data.train_y[:PROBE_BATCH]
    writer = tb.open_writer(run_dir, cfg, session=False)
    try:
        monitor = Monitor(model, cfg, writer, max_batch=len(x))
        model.train()
        with monitor.capture(0):
            logits = model(x)
        loss = F.cross_entropy(logits, y)
        loss.backward()
        monitor.after_backward(0)
        monitor.flush(0)  # no optimiser step: no update ratio
    finally:
        writer.close()
    layers = table_rows(monitor, model)
    initial = loss.item()
    lines = (
        diagnostics.init_meets_activation(cfg)
        + diagnostics.initial_loss(initial, data.num_classes)
        + monitor.diagnostics()
    )
    write_json(run_dir / "probe.json", layers)
    write_json(run_dir / "diagnostics.json", lines)
    save_figure(layers, monitor.last_hists, run_dir / "probe.png")
    print(format_table(layers))
    print(
        f"\n{len(x)} examples | loss {initial:.4f} (ln {data.num_classes} = "
        f"{math.log(data.num_classes):.4f}) | wrote probe.json, probe.png, events to {run_dir}"
    )
    for line in lines:
        log.warning(line)
    return layers


def table_rows(monitor: Monitor, model: nn.Module) -> list[dict[str, Any]]:
    """The input, then each activation layer: statistics and its affine layer's gradient norm."""
    snap = monitor.last
    rows = [{"layer": 0, "name": INPUT, "activation": None, **snap.inputs[INPUT]}]
    for i, (name, row) in enumerate(snap.acts.items(), start=1):
        weight = affine_weight_name(model, name)
        grad = snap.weights[weight]["grad_norm"] if weight in snap.weights else math.nan
        entry = {"layer": i, "name": name, "activation": snap.activation, **row,
                 "weight": weight, "grad_norm": grad}  # fmt: skip
        if name in snap.pre:
            entry.update({f"pre_{k}": v for k, v in snap.pre[name].items()})
        rows.append(entry)
    return rows


def affine_weight_name(model: nn.Module, act_name: str) -> str | None:
    """'blocks.3.act' -> 'blocks.3.fc.weight': the affine map of the same block."""
    parent = act_name.rsplit(".", 1)[0] if "." in act_name else ""
    block = model.get_submodule(parent)
    for child in AFFINE_NAMES:
        if hasattr(block, child):
            return f"{parent}.{child}.weight" if parent else f"{child}.weight"
    return None


def format_table(layers: list[dict[str, Any]]) -> str:
    """The lecture's table: one line per layer, the input first."""

    def num(value: Any, fmt: str) -> str:
        return "-" if value is None or (isinstance(value, float) and math.isnan(value)) \
            else format(value, fmt)  # fmt: skip

    head = f"{'layer':<18} {'activation':<10} {'mean':>10} {'std':>10} {'saturated':>9} " \
           f"{'dead':>6} {'grad norm':>10}"  # fmt: skip
    lines = [head, "-" * len(head)]
    for row in layers:
        label = row["name"] if row["layer"] == 0 else f"{row['layer']} {row['name']}"
        is_input = row["layer"] == 0
        lines.append(
            f"{label:<18} {row['activation'] or '-':<10} {row['mean']:>10.6f} {row['std']:>10.6f} "
            f"{'-' if is_input else format(row['saturated'], '.1%'):>9} "
            f"{'-' if is_input else format(row['dead'], '.0%'):>6} "
            f"{num(row.get('grad_norm'), '.3g'):>10}")  # fmt: skip
    return "\n".join(lines)


def save_figure(layers: list[dict[str, Any]], hists: dict, path: Path) -> None:
    """The lecture's picture: mean and std per layer, then one histogram per hidden layer,
    all on one x range so that a collapsed layer shows as a spike at 0."""
    from matplotlib.figure import Figure  # no pyplot: no global backend state (renders with Agg)

    hidden = [row for row in layers if row["layer"] > 0]
    fig = Figure(figsize=(max(8.0, 1.6 * len(hidden)), 6.0), layout="constrained")
    top, bottom = fig.subfigures(2, 1)
    depth = [row["layer"] for row in layers]
    for ax, stat in zip(top.subplots(1, 2), ("mean", "std"), strict=True):
        ax.plot(depth, [row[stat] for row in layers], "o-")
        ax.set(title=f"layer {stat}", xlabel="layer (0: input)")
    found = [hists.get(("act", row["name"])) for row in hidden]
    edges = common_edges([h for h in found if h is not None and h[2] > 0])
    axes = bottom.subplots(1, max(len(hidden), 1), squeeze=False)[0]
    for ax, row, hist in zip(axes, hidden, found, strict=False):
        if hist is not None and hist[2] > 0:
            ax.stairs(rebin(hist, edges), edges, fill=True)
        ax.set_title(f"layer {row['layer']}\nstd {row['std']:.2g}", fontsize=8)
        ax.tick_params(labelsize=6)
        ax.set_yticks([])
    fig.suptitle(f"activations at initialisation ({hidden[0]['activation'] if hidden else ''})")
    fig.savefig(path, dpi=100)


def common_edges(hists: list[list[float]], bins: int = 50) -> np.ndarray:
    """Bin edges spanning every layer's [min, max]."""
    lo = min((h[0] for h in hists), default=-1.0)
    hi = max((h[1] for h in hists), default=1.0)
    return np.linspace(lo, hi if hi > lo else lo + 1.0, bins + 1)


def rebin(hist: list[float], edges: np.ndarray) -> np.ndarray:
    """A device histogram (min, max, num, sum, sum_squares, counts...) onto `edges`, spreading
    each bin's count evenly over its width (no aliasing between the two binnings)."""
    counts = np.asarray(hist[len(HIST_HEAD) :])
    own = np.linspace(hist[0], max(hist[1], hist[0] + 1e-30), len(counts) + 1)
    cumulative = np.interp(edges, own, np.concatenate([[0.0], np.cumsum(counts)]))
    return np.diff(cumulative)
