"""Each group's mean curves written back into TensorBoard, beside the jobs' own runs.

One run per group (`_compare/<group>`): per curve, the mean over the group's seeds and its
bounds (mean ± std, clipped to the metric's range) as `<tag>/mean`, `<tag>/lower` and
`<tag>/upper`. A custom-scalars layout draws each curve as one margin chart: a line and a band
per group, in the group's colour (TensorBoard colours by run).
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import time
from pathlib import Path

from trainlab.sweep import CURVE_TAGS, Comparison, mean_curves, safe_name

CATEGORY = "comparison: mean ± std over seeds, one colour per group"
BOUNDS = {"val_acc": (0.0, 1.0), "train_acc": (0.0, 1.0)}  # losses: >= 0


def margin_layout() -> dict:
    """{category: {chart: ["Margin", [value, lower, upper]]}}: the same in every compare run."""
    return {
        CATEGORY: {
            f"{tag} (mean ± std)": ["Margin", [f"{tag}/mean", f"{tag}/lower", f"{tag}/upper"]]
            for tag in CURVE_TAGS.values()
        }
    }


def write_tensorboard(result: Comparison, root: Path) -> list[Path]:
    """One run per group: its mean curves and their bounds, at the jobs' step axis. Written into
    a new directory that then replaces `root` whole: a rerun never duplicates, a full disk leaves
    the old runs, and of two compares at once one complete set stays."""
    root.parent.mkdir(parents=True, exist_ok=True)
    new = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
    try:
        written = [root / run.name for run in _write_runs(result, new)]
        old = root.with_name(f"{new.name}.old")
        try:
            os.rename(root, old)
        except FileNotFoundError:
            pass
        try:
            os.rename(new, root)
        except OSError:  # another compare put its runs there in the meantime: they stay
            pass
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(new, ignore_errors=True)
    return written


def import_writer():
    """tensorboard's own event file writer (torch's SummaryWriter wraps it): compare writes
    TensorBoard runs without importing torch."""
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    return EventFileWriter


def open_events(run_dir: Path):
    """An event file writer whose records the calling thread writes (no writer thread taking
    the GIL for each of the thousands of scalars a many-group compare writes)."""
    from trainlab.event_records import write_inline

    return write_inline(import_writer()(str(run_dir)))


def _write_runs(result: Comparison, root: Path) -> list[Path]:
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.compat.proto.summary_pb2 import Summary

    written = []
    for g in result.groups:
        curves = mean_curves(g)
        if not any(curves.values()):
            continue
        run_dir = root / safe_name(g.label)
        run_dir.mkdir(parents=True, exist_ok=True)
        writer = open_events(run_dir)
        writer.add_event(Event(wall_time=time.time(), summary=margin_summary()))
        for key, points in curves.items():
            lo, hi = BOUNDS.get(key, (0.0, math.inf))
            tag = CURVE_TAGS[key]
            for _, step, mean, std, _ in points:
                values = {"mean": mean, "lower": max(lo, mean - std), "upper": min(hi, mean + std)}
                for name, value in values.items():
                    scalar = Summary.Value(tag=f"{tag}/{name}", simple_value=float(value))
                    summary = Summary(value=[scalar])
                    writer.add_event(Event(wall_time=time.time(), step=step, summary=summary))
        writer.close()
        written.append(run_dir)
    return written


def margin_summary():
    """margin_layout() as the custom-scalars summary (what torch's add_custom_scalars writes)."""
    from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
    from tensorboard.compat.proto.tensor_pb2 import TensorProto
    from tensorboard.compat.proto.tensor_shape_pb2 import TensorShapeProto
    from tensorboard.plugins.custom_scalar import layout_pb2

    categories = []
    for category, charts in margin_layout().items():
        margins = [
            layout_pb2.Chart(title=title, margin=layout_pb2.MarginChartContent(
                series=[layout_pb2.MarginChartContent.Series(value=v, lower=lo, upper=hi)]))
            for title, (_, (v, lo, hi)) in charts.items()
        ]  # fmt: skip
        categories.append(layout_pb2.Category(title=category, chart=margins))
    layout = layout_pb2.Layout(category=categories).SerializeToString()
    tensor = TensorProto(dtype="DT_STRING", string_val=[layout], tensor_shape=TensorShapeProto())
    metadata = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(plugin_name="custom_scalars"))
    return Summary(value=[Summary.Value(tag="custom_scalars__config__", tensor=tensor,
                                        metadata=metadata)])  # fmt: skip
