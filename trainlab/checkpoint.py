"""State in one place: `gather(run)` is everything a run must keep to resume, `restore` its inverse.

A checkpoint is written atomically (trainlab.io) every epoch, every `trainer.checkpoint_every`
steps and on SIGTERM/SIGINT. Resuming from it replays the rest of the run bit for bit on the
CPU at the same thread count: model, optimiser, scheduler, preprocessing, every RNG and the
batch generator, the epoch's permutation and how far into it the run got, the running sums
behind the logged curves, history, best-so-far and the statistics' snapshots.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from trainlab.data import Splits
from trainlab.diagnostics import Snapshot
from trainlab.io import atomic_torch_save
from trainlab.target import Tally, from_format3

FORMAT = 4  # bump when the layout changes; 3 (device sums instead of `tally`) is upgraded
RUN_KEYS = (
    "step", "epoch", "batch_start", "perm", "lr", "history", "best_val_acc", "train_time_s",
    "epoch_train_s", "last_sync",
)  # fmt: skip
SUMMARY_KEYS = ("initial_loss", "steps_to_target", "seconds_to_target")


@dataclass(eq=False)
class Run:
    """One run's objects and progress; `checkpoint.gather` picks from it what resume needs."""

    cfg: DictConfig
    run_dir: Path
    config_hash: str
    summary: dict[str, Any]
    device: torch.device = None
    data: Splits = None
    preprocess: nn.Module = None
    model: nn.Module = None
    optimizer: torch.optim.Optimizer = None
    scheduler: Any = None
    augment: Any = None
    generator: torch.Generator = None
    monitor: Any = None  # stats.Monitor
    averaged: Any = None  # averaging.Averaged (trainer.ema_decay / swa_start), else None
    writer: Any = None
    bar: Any = None
    decay_weights: list = field(default_factory=list)
    l1: float = 0.0  # cfg.regularizer.l1, read once: an OmegaConf lookup costs ~10 us a step
    total_steps: int = 0
    # progress: what the checkpoint keeps (checkpoint.RUN_KEYS)
    step: int = 0
    epoch: int = 0  # epochs started
    batch_start: int = 0  # offset into `perm` of the next batch
    perm: torch.Tensor | None = None  # this epoch's order of the training examples
    tally: Tally = None  # the curve's sums and the steps to target (trainlab.target)
    last_sync: tuple[int, float] = (0, 0.0)  # (step, seconds) of the last host sync
    lr: float = math.nan  # the lr the last step used
    history: dict[str, list] = field(default_factory=lambda: {"epochs": [], "steps": []})
    best_val_acc: float = -math.inf
    train_time_s: float = 0.0
    epoch_train_s: float = 0.0
    eval_time_s: float = 0.0  # evaluation in this attempt (validation, final metrics)
    val_probs: list | None = None  # the last validation's probabilities (trainer.predictions)
    clock: float = field(default_factory=time.perf_counter)  # perf_counter at elapsed 0

    @functools.cached_property
    def config(self) -> dict[str, Any]:
        """cfg as plain containers, resolved once: every checkpoint of the run holds it."""
        return OmegaConf.to_container(self.cfg, resolve=True)

    def elapsed(self) -> float:
        return time.perf_counter() - self.clock

    def resumed_elapsed(self, seconds: float) -> None:
        self.clock = time.perf_counter() - seconds

    def events_bytes(self) -> int:
        """Size of the TensorBoard file once flushed: a resume keeps exactly these events."""
        self.writer.flush()
        return Path(self.writer.file_writer.event_writer._file_name).stat().st_size


def gather(run: Run, *, finished: bool = False) -> dict[str, Any]:
    """Everything the run must keep to resume (and what its readers load: model, config)."""
    state = {
        "format": FORMAT,
        "finished": finished,
        "config_hash": run.config_hash,
        "config": run.config,
        "model": run.model.state_dict(),
        "preprocess": run.preprocess.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(),
        "rng": rng_state(run.generator),
        "summary": {k: run.summary.get(k) for k in SUMMARY_KEYS},
        "stats": None if run.monitor is None else monitor_state(run.monitor),
        "events_bytes": run.events_bytes(),
        "averaged": None if run.averaged is None else run.averaged.state_dict(),
        "tally": run.tally.state(),
    }
    state.update({key: getattr(run, key) for key in RUN_KEYS})
    state["elapsed_s"] = run.elapsed()
    return state


def restore(run: Run, state: dict[str, Any]) -> None:
    """The inverse of `gather`: the run continues exactly where the checkpoint was taken."""
    run.model.load_state_dict(state["model"])
    run.preprocess.load_state_dict(state["preprocess"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.scheduler.load_state_dict(state["scheduler"])
    set_rng_state(run.generator, state["rng"])
    run.summary.update(state["summary"])
    if run.averaged is not None and state.get("averaged") is not None:
        run.averaged.load_state_dict(state["averaged"])
    if run.monitor is not None and state["stats"] is not None:
        load_monitor_state(run.monitor, state["stats"])
    for key in RUN_KEYS:
        setattr(run, key, state[key])
    run.tally = Tally.from_state(state["tally"], run.cfg.trainer.target_train_error)
    run.resumed_elapsed(state["elapsed_s"])


def save(path: Path, state: dict[str, Any]) -> None:
    atomic_torch_save(path, state)


def load(path: Path, device: torch.device) -> dict[str, Any] | None:
    """The checkpoint at `path` (format 3 upgraded), or None when there is none, it cannot be
    read or it is of another format."""
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception:  # an unreadable checkpoint is not resumed; the run starts afresh
        return None
    if not isinstance(state, dict):
        return None
    if state.get("format") == 3:
        state.update(format=FORMAT, tally=from_format3(state))
    return state if state.get("format") == FORMAT else None


def rng_state(generator: torch.Generator) -> dict[str, Any]:
    """Every random number source a run may draw from."""
    np_state = np.random.get_state(legacy=False)
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
        "generator": generator.get_state(),
        "python": random.getstate(),
        "numpy_key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
        "numpy_pos": int(np_state["state"]["pos"]),
        "numpy_gauss": (int(np_state["has_gauss"]), float(np_state["gauss"])),
    }


def set_rng_state(generator: torch.Generator, state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"].cpu())
    if state["cuda"]:
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
    generator.set_state(state["generator"].cpu())
    random.setstate(state["python"])
    key = state["numpy_key"].cpu().numpy().astype(np.uint32)
    has_gauss, gauss = state["numpy_gauss"]
    np.random.set_state({"bit_generator": "MT19937", "state": {"key": key, "pos": state["numpy_pos"]},
                         "has_gauss": has_gauss, "gauss": gauss})  # fmt: skip


def monitor_state(monitor: Any) -> dict[str, Any]:
    """The snapshots the diagnostics and summary metrics are computed from."""
    return {
        "first": None if monitor.first is None else dataclasses.asdict(monitor.first),
        "last": None if monitor.last is None else dataclasses.asdict(monitor.last),
    }


def load_monitor_state(monitor: Any, state: dict[str, Any]) -> None:
    monitor.first = None if state["first"] is None else Snapshot(**state["first"])
    monitor.last = None if state["last"] is None else Snapshot(**state["last"])
