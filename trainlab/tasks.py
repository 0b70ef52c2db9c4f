"""What each Hydra command does in its job's directory: train, probe, gradcheck.

A task is `task(cfg, run_dir)`; its return value is the job's objective (a sweeper such as
Optuna's maximises it). `run_job` wraps a task so that a bad value is one line and a sweep goes on.
"""

from __future__ import annotations

import logging
import math
import os
import sys
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from trainlab.errors import ConfigError
from trainlab.fastconf import to_yaml
from trainlab.io import atomic_write_text
from trainlab.runs import claim, config_hash
from trainlab.sweep_fusion import train_pending_group
from trainlab.terminal import tag, tag_warnings

log = logging.getLogger("trainlab")


def run_job(task, cfg: DictConfig) -> float | None:
    """Run a task in Hydra's output dir; a bad value is one line, and a sweep goes on.

    Returns the task's objective, NaN on failure.
    """
    hc = HydraConfig.get()
    multirun = hc.mode == RunMode.MULTIRUN
    tag_warnings()
    try:
        return task(cfg, hc.runtime.output_dir)
    except ConfigError as err:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(tag(f"trainlab: error: {err}"), file=sys.stderr)
        if not multirun:
            sys.exit(2)
    except OSError as err:  # an output that cannot be written: full disk, read-only, gone
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(tag(f"trainlab: error: cannot write {err.filename or hc.runtime.output_dir}: "
                  f"{err.strerror or err}"), file=sys.stderr)  # fmt: skip
        if not multirun:
            sys.exit(2)
    except Exception:
        if not multirun:
            raise
        log.exception("job failed (recorded in summary.json); the sweep goes on")
    return math.nan


def train_task(cfg: DictConfig, run_dir: str) -> float:
    """Train; the objective is the best validation accuracy (NaN if the run diverged)."""
    from trainlab.train import train

    if HydraConfig.get().mode == RunMode.MULTIRUN and cfg.threads is None:
        cfg.threads = threads_per_job()
    # another config's directory is refused; a finished one keeps its record, except a
    # seed whose group leader trained it as a fused member (its summary, no .hydra yet)
    cfg_hash = config_hash(cfg)
    done = claim(Path(run_dir), cfg_hash) == "skip"
    if not done or not (Path(run_dir) / ".hydra" / "overrides.yaml").is_file():
        save_hydra_files(cfg, Path(run_dir))
    fused = train_pending_group(cfg.threads)  # this job's seed group, as one model
    summary = fused[0] if fused else train(cfg, run_dir, cfg_hash)
    best = summary.get("best_val_acc")
    return math.nan if best is None else best


def probe_task(cfg: DictConfig, run_dir: str) -> None:
    from trainlab.probe import probe

    save_hydra_files(cfg, Path(run_dir))
    probe(cfg, run_dir)


def gradcheck_task(cfg: DictConfig, run_dir: str) -> None:
    """Exit 1 when some layer's gradient is off by more than the lecture's 1e-4."""
    from trainlab.gradcheck import gradcheck, passed

    save_hydra_files(cfg, Path(run_dir))
    if not passed(gradcheck(cfg, run_dir)):
        sys.exit(1)


def save_hydra_files(cfg: DictConfig, run_dir: Path) -> None:
    """Hydra's `.hydra/` record of a job (hydra.output_subdir is null: Hydra would write it
    before the task could refuse a directory that holds another run)."""
    out = run_dir / ".hydra"
    out.mkdir(parents=True, exist_ok=True)
    hc = HydraConfig.get()
    files = {"config.yaml": cfg, "hydra.yaml": {"hydra": hc}, "overrides.yaml": hc.overrides.task}
    for name, node in files.items():
        atomic_write_text(out / name, to_yaml(node))  # OmegaConf.to_yaml's bytes, faster


def threads_per_job() -> int:
    """Torch threads for a sweep job that does not set `threads`: the same under every launcher
    (basic, fused, joblib, pool, submitit), so that the launcher never changes a job's numbers
    and parallel jobs never oversubscribe the cores: 1, or the job's own allocation when the
    launcher has one (`hydra.launcher.cpus_per_task` under submitit/Slurm)."""
    cpus = HydraConfig.get().launcher.get("cpus_per_task")
    return int(cpus) if cpus else 1
