"""TensorBoard: one writer per run, hparams written into the run itself (not add_hparams).

A resumed run keeps one events file: the events written before its checkpoint are copied into
the new writer's file (after a `purge_step` marker, so TensorBoard drops anything later even if
the old file survived a crash) and the old file is removed.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

from omegaconf import DictConfig
from tensorboard.compat.proto.event_pb2 import Event
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


EVENTS_GLOB = "events.out.tfevents.*"


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


def remove_event_files(run_dir: Path) -> None:
    for path in Path(run_dir).glob(EVENTS_GLOB):
        path.unlink()


def reopen_writer(run_dir: Path, cfg: DictConfig, step: int, events_bytes: int) -> SummaryWriter:
    """A writer for a run resumed at `step`: the first `events_bytes` of its events file (all
    that was written before the checkpoint) carried over, everything later dropped."""
    old = sorted(Path(run_dir).glob(EVENTS_GLOB), key=lambda p: p.stat().st_mtime)
    writer = SummaryWriter(log_dir=str(run_dir), purge_step=step + 1)
    if old:
        kept = old[-1].read_bytes()[:events_bytes]
        for event in read_events(kept)[1:]:  # the first is the file-version header
            writer.file_writer.add_event(event, walltime=event.wall_time)
        writer.flush()
    for path in old:
        path.unlink()
    return writer


def read_events(data: bytes) -> list[Event]:
    """The events of a TFRecord file: [length u64][crc u32][data][crc u32] per record."""
    events, pos = [], 0
    while pos + 12 <= len(data):
        (length,) = struct.unpack("<Q", data[pos : pos + 8])
        if pos + 16 + length > len(data):
            break  # a record cut short by a kill
        events.append(Event.FromString(data[pos + 12 : pos + 12 + length]))
        pos += 16 + length
    return events
