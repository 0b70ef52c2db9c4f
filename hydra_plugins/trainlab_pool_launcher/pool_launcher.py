"""`hydra/launcher=pool hydra.launcher.n_jobs=N`: up to N jobs at once, each in a fresh process.

Hydra's joblib launcher (loky) ends the whole sweep when one worker dies (TerminatedWorkerError)
and takes the jobs running beside it down too. Here every job is its own process, forked from
a server that has imported torch once (multiprocessing's forkserver: a fresh, thread-free
process per job in a fraction of a second). A job that dies (SIGKILL, out of memory) is
logged and reported as killed by compare; every other job goes on and keeps its result; the
next job takes the freed slot. Ctrl-C stops launching: running jobs checkpoint and stop.
"""

import logging
import math
import multiprocessing
import multiprocessing.connection
import signal
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cloudpickle
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, run_job, setup_globals
from hydra.plugins.launcher import Launcher
from omegaconf import DictConfig, open_dict

from trainlab.sweep_record import open_launch

log = logging.getLogger(__name__)


@dataclass
class PoolLauncherConf:
    _target_: str = "hydra_plugins.trainlab_pool_launcher.pool_launcher.PoolLauncher"
    n_jobs: int = 2  # jobs running at once


ConfigStore.instance().store(
    group="hydra/launcher", name="pool", node=PoolLauncherConf, provider="trainlab"
)


def _run_one(payload: bytes, conn: Any) -> None:
    """In the job's own process: Hydra's run_job, its JobReturn sent back to the launcher."""
    from trainlab.runs import Interrupted

    hydra_context, config, task_function, singleton_state = cloudpickle.loads(payload)
    setup_globals()
    Singleton.set_state(singleton_state)
    HydraConfig.instance().set_config(config)
    try:
        ret = run_job(hydra_context=hydra_context, task_function=task_function, config=config,
                      job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir")  # fmt: skip
    except Interrupted as err:  # checkpointed; the launcher reports it
        raise SystemExit(128 + err.signum) from None
    conn.send_bytes(cloudpickle.dumps(ret))  # hydra_cfg holds structured-config classes


class PoolLauncher(Launcher):
    def __init__(self, n_jobs: int = 2) -> None:
        self.n_jobs = max(1, n_jobs)
        self.config: DictConfig | None = None
        self.hydra_context: Any = None
        self.task_function: Any = None

    def setup(self, *, hydra_context: Any, task_function: Any, config: DictConfig) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function

    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        open_launch(self.config)
        log.info(
            "Launching %d jobs, %d at a time, one process each", len(job_overrides), self.n_jobs
        )
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["trainlab.train"])  # torch imported once, in the server
        pending = list(enumerate(job_overrides, initial_job_idx))
        running: dict[int, tuple] = {}  # sentinel -> (idx, overrides, config, process, conn)
        results: dict[int, JobReturn] = {}
        try:
            while pending or running:
                while pending and len(running) < self.n_jobs:
                    idx, overrides = pending.pop(0)
                    job = self._start(ctx, idx, list(overrides))
                    running[job[3].sentinel] = job
                self._collect(running, results)
        except KeyboardInterrupt:  # the jobs got the signal too: they checkpoint and stop
            for job in running.values():
                job[3].join(timeout=120)
            raise
        return [results[i] for i in sorted(results)]

    def _start(self, ctx: Any, idx: int, overrides: list[str]) -> tuple:
        config = self.hydra_context.config_loader.load_sweep_config(self.config, overrides)
        with open_dict(config):
            config.hydra.job.id = f"{config.hydra.job.name}_{idx}"
            config.hydra.job.num = idx
        log.info("\t#%d : %s", idx, " ".join(overrides))
        payload = cloudpickle.dumps(
            (self.hydra_context, config, self.task_function, Singleton.get_state())
        )
        receive, send = ctx.Pipe(duplex=False)
        process = ctx.Process(target=_run_one, args=(payload, send), daemon=False)
        process.start()
        send.close()
        return idx, overrides, config, process, receive

    def _collect(self, running: dict[int, tuple], results: dict[int, JobReturn]) -> None:
        """Wait for a job to end; its JobReturn, or one recording how it died."""
        conns = {job[4]: sentinel for sentinel, job in running.items()}
        for ready in multiprocessing.connection.wait([*running, *conns]):
            sentinel = conns.get(ready, ready)
            if sentinel not in running:
                continue
            idx, overrides, config, process, conn = running.pop(sentinel)
            try:
                ret = cloudpickle.loads(conn.recv_bytes()) if conn.poll() else None
            except EOFError:  # the process died before sending its result
                ret = None
            process.join()
            results[idx] = ret if ret is not None else _died(overrides, config, process.exitcode)


def _died(overrides: list[str], config: DictConfig, exitcode: int | None) -> JobReturn:
    how = (f"killed by {signal.Signals(-exitcode).name}" if exitcode and exitcode < 0
           else f"exited with code {exitcode}")  # fmt: skip
    return no_result(overrides, config, how)


def no_result(overrides: list[str], config: DictConfig, how: str) -> JobReturn:
    """A job that ended without a result: logged in one line; NaN for a sweeper's objective
    (compare reads what the job left in its directory)."""
    log.error("job %s %s; the other jobs go on", " ".join(overrides), how)
    return nan_return(overrides, config)


def nan_return(overrides: list[str], config: DictConfig) -> JobReturn:
    ret = JobReturn(overrides=overrides, cfg=config, hydra_cfg=config, status=JobStatus.COMPLETED)
    ret.return_value = math.nan
    return ret
