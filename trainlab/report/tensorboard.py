"""Each group's mean curves written back into TensorBoard, beside the jobs' own runs."""

from __future__ import annotations

import shutil
from pathlib import Path

from trainlab.sweep import CURVE_TAGS, Comparison, mean_curves, safe_name


def write_tensorboard(result: Comparison, root: Path) -> list[Path]:
    """Each group's mean and mean ± std epoch curves as TensorBoard runs, at the jobs' step axis."""
    from torch.utils.tensorboard import SummaryWriter  # slow import: only when writing

    shutil.rmtree(root, ignore_errors=True)  # a rerun replaces, never duplicates
    written = []
    for g in result.groups:
        curves = mean_curves(g)
        if not any(curves.values()):
            continue
        for run, sign in (("mean", 0), ("mean+std", 1), ("mean-std", -1)):
            run_dir = root / safe_name(g.label) / run
            with SummaryWriter(log_dir=str(run_dir)) as writer:
                for key, points in curves.items():
                    for _, step, mean, std, _ in points:
                        writer.add_scalar(CURVE_TAGS[key], mean + sign * std, global_step=step)
            written.append(run_dir)
    return written
