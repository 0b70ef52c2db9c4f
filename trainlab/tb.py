"""TensorBoard: one writer per run, hparams written into the run itself (not add_hparams)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams as hparams_summary

from trainlab.schema import choices

METRIC_TAGS = ("val/acc", "val/loss", "train/loss", "test/acc")
# the same keys in every job of a sweep; never the seed (it is what is averaged over)
NUMERIC_HPARAMS = (
    "optimizer.lr",
    "regularizer.weight_decay",
    "regularizer.p",
    "init.bias",
    "model.depth",
    "model.width",
    "trainer.batch_size",
    "trainer.epochs",
    "scheduler.warmup_steps",
)


def hparams(cfg: DictConfig) -> dict[str, Any]:
    values: dict[str, Any] = {group: str(name) for group, name in choices(cfg).items()}
    for key in NUMERIC_HPARAMS:
        node, leaf = key.rsplit(".", 1)
        value = cfg[node].get(leaf)
        values[key] = float(value) if isinstance(value, (int, float)) else str(value)
    return values


def open_writer(run_dir: Path, cfg: DictConfig) -> SummaryWriter:
    writer = SummaryWriter(log_dir=str(run_dir))
    exp, ssi, sei = hparams_summary(hparams(cfg), {tag: 0.0 for tag in METRIC_TAGS})
    for summary in (exp, ssi, sei):
        writer.file_writer.add_summary(summary)
    return writer


def add_multiline_layout(writer: SummaryWriter, charts: dict[str, dict[str, list[str]]]) -> None:
    """Custom-scalars layout, written once per run: {category: {chart: [tags drawn as lines]}}."""
    writer.add_custom_scalars(
        {
            category: {title: ["Multiline", tags] for title, tags in group.items()}
            for category, group in charts.items()
        }
    )
