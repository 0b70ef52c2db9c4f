"""A run's directory and its life: which config it holds, skip/resume/refuse, stop on a signal.

A run directory is identified by the hash of the resolved config it trains (`config_hash` in its
summary.json and checkpoint). Starting a run in a directory decides from what is there:
nothing -> a fresh run; the same config completed or diverged -> skip (a sweep re-run is
idempotent); the same config unfinished -> resume from its checkpoint; another config -> refused.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import signal
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from trainlab.errors import ConfigError
from trainlab.schema import choices

# settings that change how a run is shown or saved, never its numbers
NOT_HASHED = ("trainer.progress", "trainer.checkpoint_every", "data.download")
FINISHED = ("completed", "diverged")


def config_hash(cfg: DictConfig) -> str:
    """16 hex digits of the resolved config (what the run trains), stable across processes."""
    container = OmegaConf.to_container(cfg, resolve=True)
    for key in NOT_HASHED:
        node, leaf = key.rsplit(".", 1)
        container.get(node, {}).pop(leaf, None)
    text = json.dumps(container, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def running_summary(cfg: DictConfig, cfg_hash: str | None = None) -> dict[str, Any]:
    """What a run's summary.json says while it runs (and if it is killed): who runs it, and
    under Slurm which job (`scancel` takes it). `cfg_hash`: config_hash(cfg), if known."""
    summary = {
        "status": "running", "config_hash": cfg_hash or config_hash(cfg), "seed": cfg.seed,
        "choices": choices(cfg), "host": socket.gethostname(), "pid": os.getpid(),
    }  # fmt: skip
    env = os.environ
    if "SLURM_JOB_ID" in env:  # as squeue shows it: `<array job>_<task>` for an array's task
        task = env.get("SLURM_ARRAY_TASK_ID")
        summary["slurm_job_id"] = (
            f"{env['SLURM_ARRAY_JOB_ID']}_{task}" if task else env["SLURM_JOB_ID"]
        )
    return summary


def read_summary(run_dir: Path) -> dict[str, Any] | None:
    try:
        summary = json.loads((Path(run_dir) / "summary.json").read_text())
    except (OSError, ValueError):
        return None
    return summary if isinstance(summary, dict) else None


def claim(run_dir: Path, cfg_hash: str) -> str:
    """'fresh', 'resume' or 'skip' for a run of `cfg_hash` in `run_dir`; another config's
    directory is refused (ConfigError) before anything in it is touched."""
    previous = read_summary(run_dir)
    if previous is None:
        return "fresh"
    if previous.get("config_hash") != cfg_hash:
        raise ConfigError(
            f"run directory {run_dir} holds a run of another configuration "
            f"(status {previous.get('status')!r}); allowed: the same configuration, or another "
            "directory (hydra.run.dir / hydra.sweep.dir)"
        )
    return "skip" if previous.get("status") in FINISHED else "resume"


@contextmanager
def hold(run_dir: Path) -> Iterator[None]:
    """An exclusive lock on `run_dir/.lock` while the run lives (the kernel drops it when the
    process dies, even by SIGKILL); another process holding it is a ConfigError."""
    fd = os.open(Path(run_dir) / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise ConfigError(
            f"run directory {run_dir} is in use by another process; allowed: wait for it to "
            "end, or another directory"
        ) from None
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def is_running(run_dir: Path) -> bool:
    """Whether a live process holds the run's lock (a summary saying "running" without one is
    a killed run)."""
    try:
        fd = os.open(Path(run_dir) / ".lock", os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def new_dir(path: Path) -> Path:
    """Create `path`, or `path_2`, `path_3`, ... if it exists: atomic (mkdir), so two sweeps
    started in the same second never share a directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for k in range(1, 10_000):
        candidate = path if k == 1 else path.with_name(f"{path.name}_{k}")
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            continue
    raise ConfigError(f"{path}: no free directory name")


class Interrupted(BaseException):
    """SIGINT or SIGTERM stopped the run after a checkpoint (a BaseException, like
    KeyboardInterrupt: a one-process sweep stops instead of recording a failure)."""

    def __init__(self, signum: int, step: int, run_dir: Path, completed: bool = False) -> None:
        self.signum, self.step, self.run_dir = signum, step, run_dir
        name = signal.Signals(signum).name
        super().__init__(
            f"{name} came as the run finished (step {step}): it completed, in {run_dir}"
            if completed
            else f"interrupted by {name} at step {step}; "
            f"run the same command to resume from {run_dir}/checkpoint.pt"
        )


class StopFlag:
    signum: int | None = None


@contextmanager
def stop_on_signals() -> Iterator[StopFlag]:
    """SIGINT/SIGTERM set a flag the loop checks after every step; a second one stops at once."""
    flag = StopFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag  # signals reach the main thread only
        return

    def handler(signum: int, _frame: Any) -> None:
        if flag.signum is not None:
            raise KeyboardInterrupt
        flag.signum = signum

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield flag
    finally:
        for s, h in old.items():
            signal.signal(s, h)
