"""TensorBoard: one writer per run, opened by its first event; its hparams session
(trainlab.hparams) and custom-scalars layout are written into the run itself.

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
from tensorboard.compat.proto.summary_pb2 import Summary
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import custom_scalars

from trainlab import event_records, hparams

EVENTS_GLOB = "events.out.tfevents.*"


class RunWriter:
    """A run's SummaryWriter, opened by its first event: a run that fails before it logs
    anything (a bad config caught late, a data error) leaves no TensorBoard run. Its first
    events are its header: the hparams session and the custom-scalars layout."""

    def __init__(self, run_dir: Path, header: list[Summary], purge_step: int | None = None):
        self.run_dir, self.header, self.purge_step = Path(run_dir), list(header), purge_step
        self.writer: SummaryWriter | None = None

    def open(self) -> SummaryWriter:
        if self.writer is None:
            self.writer = SummaryWriter(log_dir=str(self.run_dir), purge_step=self.purge_step)
            write_inline(self.writer)
            for summary in self.header:
                self.writer.file_writer.add_summary(summary)
        return self.writer

    def add_header(self, summary: Summary) -> None:
        """Written first when the run logs something (at once if it already has)."""
        self.header.append(summary)
        if self.writer is not None:
            self.writer.file_writer.add_summary(summary)

    def __getattr__(self, name: str):  # add_scalar, add_histogram_raw, file_writer, flush ...
        return getattr(self.open(), name)

    def close(self, status: str | None = None) -> None:
        """Closed with the run's final status (completed, diverged, failed) as its session's
        end; a run that wrote nothing stays without events."""
        if self.writer is None:
            return
        end = hparams.session_end(status) if status else None
        if end is not None:
            self.writer.file_writer.add_summary(end)
        self.writer.close()


def write_inline(writer: SummaryWriter) -> None:
    """The writer's events written by the calling thread (trainlab.event_records)."""
    event_records.write_inline(writer.file_writer.event_writer)


def add_scalars(writer: Any, values: list[tuple[str, float]], step: int) -> None:
    """Many scalars in one event (one Summary with a value per tag): add_scalar would write an
    event, with its two checksums, per tag."""
    summary = Summary(value=[Summary.Value(tag=tag, simple_value=value) for tag, value in values])
    writer.file_writer.add_summary(summary, step)


def open_writer(run_dir: Path, cfg: DictConfig, session: bool = True) -> RunWriter:
    """The writer of a training run (its hparams session first); session=False: no session
    (a probe is no training run)."""
    return RunWriter(run_dir, hparams.session_summaries(cfg) if session else [])


def add_multiline_layout(writer: Any, charts: dict[str, dict[str, list[str]]]) -> None:
    """Custom-scalars layout, written once per run: {category: {chart: [tag regexes]}}."""
    layout = {
        category: {title: ["Multiline", tags] for title, tags in group.items()}
        for category, group in charts.items()
    }
    if isinstance(writer, RunWriter):
        writer.add_header(custom_scalars(layout))
    else:
        writer.add_custom_scalars(layout)


def remove_event_files(run_dir: Path) -> None:
    for path in Path(run_dir).glob(EVENTS_GLOB):
        path.unlink()


def reopen_writer(run_dir: Path, step: int, events_bytes: int) -> RunWriter:
    """A writer for a run resumed at `step`: the first `events_bytes` of its events file (all
    that was written before the checkpoint, its session and layout included) carried over,
    everything later dropped."""
    old = sorted(Path(run_dir).glob(EVENTS_GLOB), key=lambda p: p.stat().st_mtime)
    writer = RunWriter(run_dir, [], purge_step=step + 1)
    writer.open()
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
