"""Hydra callbacks: output directories claimed at the start, `trainlab compare` at the end of
every multirun.

Registered in conf/config.yaml under `hydra.callbacks`; Hydra calls `on_multirun_end` on the
launching machine once every job has returned, with the multirun's config.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger("trainlab")


class ClaimOutputDirs(Callback):
    """Create the run or sweep directory before Hydra does: a default one never collides with
    another started the same second; a sweep directory holding another sweep is refused."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        from trainlab.sweep_record import claim_output_dir

        claim_output_dir(config, "run")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from hydra_plugins.trainlab_pool_launcher.survivors import use_survivors
        from trainlab.sweep_record import start_sweep
        from trainlab.terminal import quiet_third_party, sweep_total

        quiet_third_party(config)
        sweep_dir = start_sweep(config)
        use_survivors(config)  # a dead joblib or submitit job never ends the sweep before compare
        (sweep_dir / ".finished").unlink(missing_ok=True)  # the [k/N] of this launch
        log.info("sweep of %s jobs into %s", sweep_total(config), sweep_dir)


class JobLine(Callback):
    """One line per finished training job: in a single run its result and directory, in a
    sweep `[k/N] overrides | status | metric | time` (trainlab.terminal)."""

    def __init__(self) -> None:
        self.started = time.monotonic()

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.started = time.monotonic()

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        from trainlab.terminal import result_line

        if str(OmegaConf.select(config, "hydra.job.name", default="train")) != "train":
            return
        try:
            line = result_line(config, job_return, time.monotonic() - self.started)
        except OSError as err:  # the sweep directory went away: the job's result stands
            line = f"job ended; its line could not be written: {err}"
        log.info("%s", line)


class CompareOnMultirunEnd(Callback):
    """Run compare on a training sweep; the sweep exits as `trainlab compare` would (0, 1 if a
    job failed, was killed or never started, 2 if nothing could be compared; compare.run_compare).
    A sweep of another command (probe, gradcheck) is not compared: each job either wrote its
    result file or failed.
    """

    worker = None  # trainlab.compare_worker, started with a training sweep
    # launchers that train in the sweep's own process, one job at a time: a core is left free
    # for the worker (a pool of workers or a cluster: compare runs in the sweep's process)
    IN_PROCESS = ("FusedLauncher", "BasicLauncher")

    def __getstate__(self) -> dict[str, Any]:
        """Sent to a sweep's worker processes (trainlab.sweep_pool) without the compare
        worker, which only the sweep's own process talks to."""
        return {k: v for k, v in self.__dict__.items() if k != "worker"}

    early = None  # the worker `trainlab train -m` started before importing torch (hydra_app)

    @classmethod
    def start_worker(cls, launcher: str) -> None:
        """Start the worker before the sweep's own imports: it imports on the other core."""
        from trainlab import compare_worker

        if launcher in cls.IN_PROCESS and cls.early is None:
            cls.early = compare_worker.start()

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from trainlab import compare_worker

        name = str(OmegaConf.select(config, "hydra.job.name", default="train"))
        launcher = str(OmegaConf.select(config, "hydra.launcher._target_", default=""))
        early, CompareOnMultirunEnd.early = CompareOnMultirunEnd.early, None
        if name == "train" and launcher.rsplit(".", 1)[-1] in self.IN_PROCESS:
            self.worker = early or compare_worker.start()
        else:
            compare_worker.stop(early)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from trainlab import compare_worker

        name = str(OmegaConf.select(config, "hydra.job.name", default="train"))
        # Hydra's `now` resolver is cached on this config: same dir the launcher used.
        sweep_dir = OmegaConf.select(config, "hydra.sweep.dir")
        if sweep_dir is None:  # not a multirun's config
            return
        sweep_dir = str(sweep_dir)
        (Path(sweep_dir) / ".finished").unlink(missing_ok=True)  # every job ended: no [k/N] left
        if name != "train":
            compare_worker.stop(self.worker)
            report_jobs(Path(sweep_dir), name)
            return
        code = compare_worker.run(self.worker, sweep_dir)  # compare's exit codes, made ready
        if code is None:
            code = compare_here(sweep_dir)
        if code:
            raise SystemExit(code)


def compare_here(sweep_dir: str) -> int:
    from trainlab.compare import run_compare

    try:
        return run_compare(sweep_dir)  # the exit codes of `trainlab compare`
    except Exception:  # compare itself broke: the jobs' results are there
        log.exception("trainlab compare failed at the end of the multirun")
        return 1


def report_jobs(sweep_dir: Path, name: str) -> None:
    """One line for a sweep of `name` (probe, gradcheck); exit 1 if a job wrote no result."""
    from trainlab.hydra_app import command
    from trainlab.sweep import find_job_dirs

    cmd = command(name)
    jobs = find_job_dirs(sweep_dir) if sweep_dir.is_dir() else []
    if cmd is None or not jobs:
        return
    failed = [j for j in jobs if not (j / cmd.result).is_file()]
    print(
        f"trainlab {name}: {len(jobs) - len(failed)} of {len(jobs)} jobs wrote {cmd.result} in {sweep_dir}"
    )
    if failed:
        names = ", ".join(str(j.relative_to(sweep_dir)) for j in failed)
        print(
            f"trainlab: {len(failed)} of {len(jobs)} {name} jobs failed: {names}", file=sys.stderr
        )
        raise SystemExit(1)
