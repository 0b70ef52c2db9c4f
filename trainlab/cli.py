"""Entry point only: `trainlab train|probe [hydra overrides]`, `trainlab compare SWEEP_DIR`."""

from __future__ import annotations

import hashlib
import logging
import math
import os
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from trainlab import lazy_dynamo
from trainlab.errors import ConfigError
from trainlab.io import atomic_write_text
from trainlab.preflight import preflight
from trainlab.runs import Interrupted, claim, config_hash
from trainlab.schema import register_configs
from trainlab.sweep_fusion import train_pending_group

log = logging.getLogger("trainlab")
MAX_NAME = 200  # bytes of a run directory's name
USAGE = """usage: trainlab COMMAND [ARGS]

commands:
  train [OVERRIDES]      train one configuration; -m OVERRIDES runs a Hydra multirun sweep
  probe [OVERRIDES]      one batch forward/backward at initialisation: the per-layer table
  gradcheck [OVERRIDES]  analytic vs numerical gradients of every layer, in float64
  compare SWEEP_DIR      the verdict of a sweep: table, plots, claims
  compare A B [--out D]  several sweeps (e.g. random vs grid search): per-seed best, claims

Overrides are Hydra's: trainlab train activation=gelu init=kaiming_normal optimizer.lr=0.01
`trainlab train --help` lists every config group and its options; `--cfg job` prints the config.
"""


def conf_dir() -> str:
    """conf/ ships inside the wheel as trainlab/conf; a source checkout has it at the top."""
    packaged = Path(__file__).resolve().parent / "conf"
    return str(packaged if packaged.is_dir() else packaged.parent.parent / "conf")


def run_name(override_dirname: str, seed: int) -> str:
    """A job's directory and TensorBoard run name: the overrides, then the seed last.

    Overrides longer than MAX_NAME bytes are cut and end in a hash of the whole (a file name
    holds at most 255 bytes)."""
    name = override_dirname or "default"
    if len(name.encode()) > MAX_NAME:
        digest = hashlib.sha256(name.encode()).hexdigest()[:12]
        name = name.encode()[: MAX_NAME - 13].decode(errors="ignore") + "-" + digest
    return f"{name}/seed={seed}"


if not OmegaConf.has_resolver("tl_run_name"):
    OmegaConf.register_new_resolver("tl_run_name", run_name)
register_configs()


def _job(task, cfg: DictConfig) -> float | None:
    """Run a task in Hydra's output dir; a bad value is one line, and a sweep goes on.

    Returns the task's objective (a sweeper such as Optuna's maximises it), NaN on failure.
    """
    hc = HydraConfig.get()
    multirun = hc.mode == RunMode.MULTIRUN
    try:
        return task(cfg, hc.runtime.output_dir)
    except ConfigError as err:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"trainlab: error: {err}", file=sys.stderr)
        if not multirun:
            sys.exit(2)
    except OSError as err:  # an output that cannot be written: full disk, read-only, gone
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"trainlab: error: cannot write {err.filename or hc.runtime.output_dir}: "
              f"{err.strerror or err}", file=sys.stderr)  # fmt: skip
        if not multirun:
            sys.exit(2)
    except Exception:
        if not multirun:
            raise
        log.exception("job failed (recorded in summary.json); the sweep goes on")
    return math.nan


def _train_task(cfg: DictConfig, run_dir: str) -> float:
    """Train; the objective is the best validation accuracy (NaN if the run diverged)."""
    from trainlab.train import train

    if HydraConfig.get().mode == RunMode.MULTIRUN and cfg.threads is None:
        cfg.threads = _threads_per_job()
    if claim(Path(run_dir), config_hash(cfg)) != "skip":  # another config's: refused
        save_hydra_files(cfg, Path(run_dir))
    fused = train_pending_group(cfg.threads)  # this job's seed group, as one model
    summary = fused[0] if fused else train(cfg, run_dir)
    best = summary.get("best_val_acc")
    return math.nan if best is None else best


def _probe_task(cfg: DictConfig, run_dir: str) -> None:
    from trainlab.probe import probe

    save_hydra_files(cfg, Path(run_dir))
    probe(cfg, run_dir)


def _gradcheck_task(cfg: DictConfig, run_dir: str) -> None:
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
        atomic_write_text(out / name, OmegaConf.to_yaml(node))


def _threads_per_job() -> int | None:
    """Torch threads for one sweep job, so that parallel jobs don't oversubscribe the cores.

    None (torch's default, every core) when jobs run one at a time (the basic launcher).
    """
    launcher = HydraConfig.get().launcher
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if launcher.get("cpus_per_task"):  # submitit: the job's own allocation
        return int(launcher.cpus_per_task)
    n_jobs = launcher.get("n_jobs")  # joblib; -1 means one job per core
    if n_jobs is not None:
        return 1 if n_jobs < 0 else max(1, (cores or 1) // n_jobs)
    if "submitit" in str(launcher.get("_target_", "")):  # submitit_local starts every job at once
        return 1
    return None


def _hydra_command(task, name: str, args: list[str]) -> None:
    @hydra.main(version_base="1.3", config_path=conf_dir(), config_name="config")
    def command(cfg: DictConfig) -> float | None:
        return _job(task, cfg)

    try:
        preflight(args, conf_dir())  # bad input: one line, exit 2, nothing created
    except ConfigError as err:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"trainlab: error: {err}", file=sys.stderr)
        sys.exit(2)
    argv, sys.argv = sys.argv, [f"trainlab {name}", *args]
    try:
        command()
    except Interrupted as err:  # SIGINT/SIGTERM: the run saved a checkpoint and stopped
        print(f"trainlab: {err}", file=sys.stderr)
        sys.exit(128 + err.signum)
    except KeyboardInterrupt:  # a second Ctrl-C, or one outside a run
        print("trainlab: interrupted", file=sys.stderr)
        sys.exit(130)
    finally:
        sys.argv = argv


def main(argv: list[str] | None = None) -> None:
    lazy_dynamo.install()  # torch.optim would import torch._dynamo (2-3 s) to do nothing here
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return
    cmd, args = argv[0], argv[1:]
    if cmd == "train":
        _hydra_command(_train_task, cmd, args)
    elif cmd == "probe":
        _hydra_command(_probe_task, cmd, args)
    elif cmd == "gradcheck":
        _hydra_command(_gradcheck_task, cmd, args)
    elif cmd == "compare":  # SWEEP_DIR, or SWEEP_A SWEEP_B ... [--out DIR]: searches compared
        from trainlab.compare import compare_main

        sys.exit(compare_main(args))
    else:
        print(
            f"trainlab: error: unknown command {cmd!r}: allowed are train, probe, compare, gradcheck",
            file=sys.stderr,
        )
        sys.exit(2)


if __name__ == "__main__":
    main()
