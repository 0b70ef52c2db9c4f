"""TensorBoard event files written by the calling thread, without torch.

tensorboard's `EventFileWriter` hands each event to a writer thread, which takes the GIL for
every record and checksums it in pure Python (~350 us a KB). `write_inline` replaces that
thread by `InlineRecords`: the same records, framed and checksummed (in C) by the caller into
a buffered file. Used by the training runs' writers (trainlab.tb) and by compare's runs
(trainlab.report.tensorboard), which import no torch.
"""

from __future__ import annotations

import struct
import time
from typing import Any

import google_crc32c


def masked_crc32c(data: bytes) -> bytes:
    """A TFRecord checksum: CRC-32C, rotated and offset (1.5 us a KB here, in C; tensorboard's
    pure-Python one takes ~350 us: a statistics capture's event is about 1 KB)."""
    crc = google_crc32c.value(data)
    return struct.pack("<I", (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF)


class InlineRecords:
    """An events file's records written by the caller into a buffered file, flushed at least
    every FLUSH_S seconds (a live TensorBoard sees them) and on flush/close. SummaryWriter's
    own writer thread takes the GIL for each event it writes: the training thread, waiting
    to get it back after every torch op, lost ~1 ms per logged point on 2 cores."""

    FLUSH_S = 5.0

    def __init__(self, path: str) -> None:
        self.file = open(path, "ab")  # noqa: SIM115 (closed by close(), with the writer)
        self.flushed = time.monotonic()

    def write(self, data: bytes) -> None:
        """One record: [length u64][its checksum u32][data][its checksum u32]."""
        header = struct.pack("<Q", len(data))
        self.file.write(header + masked_crc32c(header) + data + masked_crc32c(data))
        if time.monotonic() - self.flushed > self.FLUSH_S:
            self.flush()

    def flush(self) -> None:
        self.file.flush()
        self.flushed = time.monotonic()

    def close(self) -> None:
        self.file.close()


def write_inline(events: Any) -> Any:
    """An `EventFileWriter` whose events thread is replaced by InlineRecords on the same file
    (the thread first writes what it was given: the file's header)."""
    events._async_writer.close()
    events._async_writer = InlineRecords(events._file_name)
    return events
