"""A sweep's units of work in worker processes, up to N at once (hydra/launcher=pool, and
hydra/launcher=fused with `n_jobs` > 1).

A unit is a list of jobs run one after another in one process: a single job (the pool
launcher), or a fused group's jobs (the fused launcher: the group trains when its first job
runs, trainlab.sweep_fusion, and the others find their results written). Each unit's process
is forked from a server that has imported trainlab.train once (multiprocessing's forkserver: a
fresh, thread-free process in a fraction of a second) and sends each job's JobReturn as the
job ends. A process that dies (SIGKILL, out of memory) loses only its unit's unfinished jobs:
they are logged in one line each and reported as killed by compare; the other units go on and
the next unit takes the freed slot. SIGINT or SIGTERM to the sweep is passed to the running
units (each in its own process group, so a Ctrl-C reaches them once): their jobs checkpoint
and stop, nothing more is started, and the sweep exits 128 + the signal's number.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import math
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from omegaconf import DictConfig

from trainlab.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass
class Job:
    idx: int  # the job's number in the sweep
    overrides: list[str]
    config: DictConfig  # its sweep config (hydra node included)
    group: list[DictConfig] = field(default_factory=list)  # configs trained fused with its run


def resolve_n_jobs(n_jobs: Any, threads: Any) -> int:
    """Processes at once: an int >= 1, -1 for one per core, `auto` for one per `threads` of
    the cores when the sweep sets `threads` (1 when it does not)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if n_jobs == "auto":
        return max(1, (cores or 1) // threads) if isinstance(threads, int) and threads > 0 else 1
    if isinstance(n_jobs, int) and not isinstance(n_jobs, bool) and (n_jobs >= 1 or n_jobs == -1):
        return cores or 1 if n_jobs == -1 else n_jobs
    raise ConfigError(
        f"hydra.launcher.n_jobs={n_jobs} is not allowed: an integer >= 1 (parallel jobs), "
        "-1 for one job per core, or auto (one per `threads` cores when threads is set)"
    )


def start_server() -> Any:
    """The fork server, started now: it imports what the jobs need (trainlab.pool_preload, a
    few seconds) on a core of its own. `trainlab train -m` starts it right after the preflight
    when the jobs will run in workers, and then does not import torch itself (hydra_app.run):
    1.2 s off a 10-job sweep (`python scripts/bench_trees.py OLD NEW -- +experiment=ensembles`)."""
    import multiprocessing.forkserver

    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["trainlab.pool_preload"])
    if getattr(multiprocessing.forkserver._forkserver, "_forkserver_pid", None) is None:
        atexit.register(stop_server)
    multiprocessing.forkserver.ensure_running()
    return ctx


def stop_server() -> None:
    """At exit, the fork server killed, not asked to stop: asked, it tore its torch down for
    0.5 s more while it still held the sweep's stdout and stderr (a pipe reading them, as
    scripts/run_experiments.py's does, waited). Its units have ended (or were sent the signal)."""
    import multiprocessing.forkserver

    server = multiprocessing.forkserver._forkserver  # no public stop: the standard library's own
    pid = getattr(server, "_forkserver_pid", None)  # tests use _stop; it waits for the exit
    if pid is None:
        return
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(OSError, AttributeError):
        server._stop_unlocked()  # its pipe closed, the process reaped, its socket file removed


def run_units(units: Sequence[list[Job]], n_workers: int, hydra_context: Any,
              task_function: Any) -> dict[int, JobReturn]:  # fmt: skip
    """Every unit's JobReturns by job number, units started in the order given."""
    import cloudpickle
    from hydra.core.singleton import Singleton

    ctx = start_server()  # if the launcher has not started it yet
    sweep_alive, _held = ctx.Pipe(duplex=False)  # _held: only this process writes, never
    state = Singleton.get_state()
    pending = list(units)
    running: dict[int, _Running] = {}  # process sentinel -> unit
    results: dict[int, JobReturn] = {}
    with _Forward(running) as signals:
        while pending or running:
            while pending and len(running) < n_workers and not signals.received:
                unit = pending.pop(0)
                for job in unit:
                    log.info("\t#%d : %s", job.idx, " ".join(job.overrides))
                payload = cloudpickle.dumps((hydra_context, task_function, state, unit))
                proc = _Running(ctx, payload, unit, sweep_alive)
                running[proc.process.sentinel] = proc
            if running:
                _collect(running, results, quiet=bool(signals.received))
            elif signals.received:
                break
    if signals.received:
        name = signal.Signals(signals.received).name
        print(f"trainlab: sweep interrupted by {name}: the running jobs checkpointed; "
              "re-run the sweep command to resume", file=sys.stderr)  # fmt: skip
        raise SystemExit(128 + signals.received)
    return results


class _Running:
    """A unit's process and the read end of its pipe."""

    def __init__(self, ctx: Any, payload: bytes, unit: list[Job], sweep_alive: Any) -> None:
        self.unit = unit
        self.conn, send = ctx.Pipe(duplex=False)
        self.process = ctx.Process(target=_run_unit, args=(payload, send, sweep_alive),
                                   daemon=False)  # fmt: skip
        self.process.start()
        send.close()

    def receive(self, results: dict[int, JobReturn]) -> None:
        """The JobReturns the unit has sent so far."""
        import cloudpickle

        try:
            while self.conn.poll():
                idx, ret = cloudpickle.loads(self.conn.recv_bytes())
                results[idx] = ret
        except (EOFError, OSError):  # the process ended (or died halfway through a message)
            pass


def _collect(running: dict[int, _Running], results: dict[int, JobReturn], quiet: bool) -> None:
    """Wait for a unit to send a result or end; a job it ended without gets one saying how
    (logged unless the sweep was interrupted: then it says so once)."""
    conns = {proc.conn: sentinel for sentinel, proc in running.items()}
    for ready in multiprocessing.connection.wait([*running, *conns]):
        sentinel = conns.get(ready, ready)
        proc = running.get(sentinel)
        if proc is None:
            continue
        proc.receive(results)
        if ready is sentinel:  # ended: whatever it sent is in the pipe
            del running[sentinel]
            proc.receive(results)
            proc.process.join()
            for job in proc.unit:
                if job.idx not in results:
                    results[job.idx] = (nan_return(job.overrides, job.config) if quiet
                                        else _died(job, proc.process.exitcode))  # fmt: skip


def _run_unit(payload: bytes, conn: Any, sweep_alive: Any) -> None:
    """In the unit's own process: its jobs in order, as the in-process launcher runs them."""
    os.setpgid(0, 0)  # a Ctrl-C reaches the sweep alone; it passes the signal on once
    _stop_with_sweep(sweep_alive)
    import cloudpickle
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.singleton import Singleton
    from hydra.core.utils import setup_globals

    from trainlab.runs import Interrupted
    from trainlab.sweep_fusion import fused_group
    from trainlab.sweep_job import run_job

    hydra_context, task_function, singleton_state, unit = cloudpickle.loads(payload)
    setup_globals()
    Singleton.set_state(singleton_state)
    HydraConfig.instance().set_config(unit[0].config)
    for job in unit:
        try:
            with fused_group(job.group):
                ret = run_job(hydra_context=hydra_context, task_function=task_function,
                              config=job.config, job_dir_key="hydra.sweep.dir",
                              job_subdir_key="hydra.sweep.subdir")  # fmt: skip
        except Interrupted as err:  # checkpointed; the launcher reports it
            raise SystemExit(128 + err.signum) from None
        conn.send_bytes(cloudpickle.dumps((job.idx, ret)))  # hydra_cfg: structured configs


def _stop_with_sweep(sweep_alive: Any) -> None:
    """SIGTERM to this process (its jobs checkpoint and stop) when the sweep's end of
    `sweep_alive` closes: a sweep killed outright leaves no unit training on its own."""

    def watch() -> None:
        try:
            sweep_alive.recv_bytes()  # the sweep never writes: this returns at its end
        except (EOFError, OSError):
            os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, daemon=True).start()


class _Forward:
    """While units run, SIGINT and SIGTERM are passed on to them (their jobs checkpoint and
    stop) and no further unit starts."""

    def __init__(self, running: dict[int, _Running]) -> None:
        self.running, self.received, self.old = running, 0, {}

    def __enter__(self) -> _Forward:
        for signum in (signal.SIGINT, signal.SIGTERM):
            self.old[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self.old.items():
            signal.signal(signum, handler)

    def _handle(self, signum: int, _frame: Any) -> None:
        self.received = self.received or signum
        for proc in self.running.values():
            if proc.process.pid is not None:
                try:
                    os.kill(proc.process.pid, signum)
                except ProcessLookupError:
                    pass


def _died(job: Job, exitcode: int | None) -> JobReturn:
    how = (f"killed by {signal.Signals(-exitcode).name}" if exitcode and exitcode < 0
           else f"exited with code {exitcode}")  # fmt: skip
    return no_result(job.overrides, job.config, how)


def no_result(overrides: list[str], config: DictConfig, how: str) -> JobReturn:
    """A job that ended without a result: logged in one line; NaN for a sweeper's objective
    (compare reads what the job left in its directory)."""
    log.error("job %s %s; the other jobs go on", " ".join(overrides), how)
    return nan_return(overrides, config)


def nan_return(overrides: list[str], config: DictConfig) -> JobReturn:
    ret = JobReturn(overrides=overrides, cfg=config, hydra_cfg=config, status=JobStatus.COMPLETED)
    ret.return_value = math.nan
    return ret
