"""Atomic writes: a reader (compare, a resumed run, a killed job's sibling) never sees half a file.

Each write goes to a temporary file beside the target (unique per process and call), then is
renamed over the target with os.replace, which is atomic on POSIX. A full disk or a kill leaves
the old file intact and at most a stray `.<name>.*.tmp`, never a truncated target. Checkpoints
are also flushed to the disk before the rename (`durable`: what a resume needs survives a
machine's crash too); the records a job writes many of (summaries, `.hydra/` files, plots) are
not: an fsync each cost a sweep ~20 ms a job, and a record lost to a crash is a job run again.
"""

from __future__ import annotations

import io
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

_UMASK = os.umask(0o022)  # read once (os.umask can only be read by setting it)
os.umask(_UMASK)


def atomic_write_bytes(path: str | Path, data: bytes, durable: bool = False) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # a plain file's mode, not mkstemp's 0600
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def write_json(path: str | Path, obj: Any) -> None:
    """Strict JSON (NaN and inf become null), written atomically."""
    atomic_write_text(path, json.dumps(finite_or_none(obj), indent=2, allow_nan=False))


def atomic_torch_save(path: str | Path, obj: Any) -> None:
    import torch  # here: readers of plain files (compare, report) need no torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getvalue(), durable=True)


def finite_or_none(obj: Any) -> Any:
    """NaN/inf become null: strict JSON that every reader parses."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_or_none(v) for v in obj]
    return obj
