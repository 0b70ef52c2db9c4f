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
    from torch.utils.tensorboard import SummaryWriter  # slow import: only when writing

    return SummaryWriter


def _write_runs(result: Comparison, root: Path) -> list[Path]:
    SummaryWriter = import_writer()  # noqa: N806
    written = []
    for g in result.groups:
        curves = mean_curves(g)
        if not any(curves.values()):
            continue
        run_dir = root / safe_name(g.label)
        with SummaryWriter(log_dir=str(run_dir)) as writer:
            writer.add_custom_scalars(margin_layout())
            for key, points in curves.items():
                lo, hi = BOUNDS.get(key, (0.0, math.inf))
                tag = CURVE_TAGS[key]
                for _, step, mean, std, _ in points:
                    writer.add_scalar(f"{tag}/mean", mean, global_step=step)
                    writer.add_scalar(f"{tag}/lower", max(lo, mean - std), global_step=step)
                    writer.add_scalar(f"{tag}/upper", min(hi, mean + std), global_step=step)
        written.append(run_dir)
    return written
