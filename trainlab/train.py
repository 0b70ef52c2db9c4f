"""train(cfg, run_dir) -> summary: the whole procedure, readable top to bottom.

Data sit on the device as tensors; batches are index slices of a per-epoch permutation;
augmentation and preprocessing run batched on the device. `train` is re-entrant (Hydra's
basic launcher runs sweep jobs in one process): seeds are set and writers closed per call.
A run checkpoints every epoch, every `trainer.checkpoint_every` steps and on SIGINT/SIGTERM,
and a run started in a directory holding an unfinished run of the same config resumes it
exactly (trainlab.checkpoint); a finished one is skipped, another config's is refused.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from trainlab import checkpoint, finish, loop, runs, start, sweep_fusion, terminal
from trainlab.checkpoint import Run
from trainlab.io import write_json
from trainlab.loop import LOG_EVERY, Diverged, log_curve
from trainlab.start import evaluate, prepare
from trainlab.validate import validate

__all__ = ["LOG_EVERY", "evaluate", "log_curve", "prepare", "train"]  # importers of trainlab.train
log = logging.getLogger("trainlab")


def train(cfg: DictConfig, run_dir: str | Path, cfg_hash: str | None = None) -> dict[str, Any]:
    """Train one configuration; write events, checkpoint, history.json and summary.json.
    `cfg_hash`: runs.config_hash(cfg), where the caller has it (a sweep's task)."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg_hash = cfg_hash or runs.config_hash(cfg)
    with runs.hold(run_dir):  # one process per run directory
        action = runs.claim(run_dir, cfg_hash)  # another config's: left untouched
        if action == "skip":
            summary = runs.read_summary(run_dir)
            # a job its group's first job trained (fused) just now: its job line says it
            member = run_dir.resolve() in sweep_fusion.TRAINED
            log.log(logging.DEBUG if member else logging.INFO, "already finished in %s: skipped",
                    run_dir)  # fmt: skip
            return summary
        return _attempt(Run(cfg, run_dir, cfg_hash, runs.running_summary(cfg, cfg_hash)), action)


def _attempt(run: Run, action: str) -> dict[str, Any]:
    """Run (or resume) and record how it ended in summary.json, whatever happens."""
    threads = torch.get_num_threads()
    late = None  # a signal during the final evaluation: the run completes, then stops
    try:
        write_json(run.run_dir / "summary.json", run.summary)  # never a stale result
        validate(run.cfg)
        with runs.stop_on_signals() as stop:
            _train(run, stop, resume=action == "resume")
            late = stop.signum
        run.summary["status"] = "completed"
    except Diverged as err:
        run.summary.update(status="diverged", error=str(err), diverged_at_step=err.step)
        log.log(terminal.run_level(logging.WARNING), "diverged: %s", err)
    except (runs.Interrupted, KeyboardInterrupt) as err:
        run.summary.update(status="interrupted", error=str(err) or "KeyboardInterrupt")
        raise
    except BaseException as err:
        run.summary.update(status="failed", error=f"{type(err).__name__}: {err}")
        raise
    finally:
        torch.set_num_threads(threads)  # the next job of a one-process sweep starts afresh
        finish.close(run)
        finish.write_quiet(
            run.run_dir / "summary.json", run.summary, quiet=sys.exc_info()[0] is not None
        )
    if late is not None:  # a sweep stops here, as it would have at the next step
        raise runs.Interrupted(late, run.step, run.run_dir, completed=True)
    return run.summary


def _train(run: Run, stop: runs.StopFlag, resume: bool) -> None:
    start.set_up(run)
    state = checkpoint.load(run.run_dir / "checkpoint.pt", run.device) if resume else None
    if state is not None and state["config_hash"] == run.config_hash:
        start.resume(run, state)
    else:
        start.fresh(run)
    n_train, bs = len(run.data.train_x), run.cfg.trainer.batch_size
    every = run.cfg.trainer.checkpoint_every
    while run.step < run.total_steps:
        if run.perm is None:  # a new epoch
            run.epoch += 1
            run.perm = torch.randperm(n_train, device=run.device, generator=run.generator)
            run.tally.new_epoch()
        while run.batch_start < n_train and run.step < run.total_steps:
            tick = time.perf_counter()
            loop.train_step(run, run.perm[run.batch_start : run.batch_start + bs])
            run.batch_start += bs
            if run.step % LOG_EVERY == 0 or run.step == run.total_steps:
                loop.log_window(run)
            run.epoch_train_s += time.perf_counter() - tick
            if stop.signum is not None:
                loop.save_checkpoint(run)
                raise runs.Interrupted(stop.signum, run.step, run.run_dir)
            if every and run.step % every == 0:
                loop.save_checkpoint(run)
        loop.end_epoch(run)
        loop.save_checkpoint(run)
    run.bar.close()
    finish.finish(run)
