"""`hydra/launcher=fused` (trainlab's default): Hydra's basic launcher, jobs one after another
in this process, except that the jobs differing only in seed are trained together as one
fused model when the first of them runs (trainlab.sweep_fusion), with those differing in
optimizer.lr or the init as well (`hydra.launcher.fuse_values=false`: seeds only); the others
then find their results written and are skipped. `hydra.launcher.fuse=false` runs every job
separately.

`hydra.launcher.n_jobs` > 1 runs the sweep's units (each fused group, each job trained alone)
in that many worker processes at once, the biggest first, a group halved where that ends the
sweep sooner (sweep_fusion.work_units); each unit's jobs run in order as they do here
(trainlab.sweep_pool, shared with hydra/launcher=pool). `auto` (the default): one process per
`threads` cores when the sweep sets `threads` (every experiment sets `threads: 1`), else 1.
1 runs everything in this process, as before: for a sweep of a few seconds' training, workers
cost more (a few seconds to start) than they save.
"""

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn, configure_log, filter_overrides
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict

from trainlab.sweep_fusion import fused_group, seed_groups, work_units
from trainlab.sweep_job import run_job
from trainlab.sweep_pool import Job, resolve_n_jobs, run_units, start_server
from trainlab.sweep_record import open_launch

log = logging.getLogger(__name__)


@dataclass
class FusedLauncherConf:
    _target_: str = "hydra_plugins.trainlab_fused_launcher.fused_launcher.FusedLauncher"
    fuse: bool = True  # false: every job trained on its own, as Hydra's basic launcher does
    fuse_values: bool = True  # false: only jobs that differ in nothing but the seed fuse
    n_jobs: Any = "auto"  # worker processes at once; auto: cores // threads when threads is set


ConfigStore.instance().store(group="hydra/launcher", name="fused", node=FusedLauncherConf)


class FusedLauncher(Launcher):
    def __init__(self, fuse: bool = True, fuse_values: bool = True, n_jobs: Any = "auto") -> None:
        self.fuse, self.fuse_values, self.n_jobs = fuse, fuse_values, n_jobs
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.task_function: TaskFunction | None = None

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function

    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        """Every job's return in the sweep's order (the sweeper reads them in this order)."""
        open_launch(self.config)
        groups = seed_groups(job_overrides, self.fuse_values) if self.fuse else {}
        workers = resolve_n_jobs(self.n_jobs, OmegaConf.select(self.config, "threads"))
        units = work_units(len(job_overrides), groups, workers) if workers > 1 else []
        workers = min(workers, len(units))
        if workers > 1:
            start_server()
        configs = []
        for idx, overrides in enumerate(job_overrides, start=initial_job_idx):
            sweep_config = self.hydra_context.config_loader.load_sweep_config(
                self.config, list(overrides)
            )
            with open_dict(sweep_config):
                sweep_config.hydra.job.id = sweep_config.hydra.job.num = idx
                sweep_config.hydra.launcher.n_jobs = max(1, workers)  # what ran: job lines read it
            configs.append(sweep_config)
        if workers > 1:
            return self._in_workers(job_overrides, initial_job_idx, configs, units, workers)
        log.info(f"Launching {len(job_overrides)} jobs locally ({len(groups)} groups fused)")
        runs = []
        for i, (overrides, sweep_config) in enumerate(zip(job_overrides, configs, strict=True)):
            log.info(f"\t#{initial_job_idx + i} : {' '.join(filter_overrides(overrides))}")
            with fused_group([configs[j] for j in groups.get(i, [])]):
                runs.append(run_job(
                    hydra_context=self.hydra_context, task_function=self.task_function,
                    config=sweep_config, job_dir_key="hydra.sweep.dir",
                    job_subdir_key="hydra.sweep.subdir",
                ))  # fmt: skip
            configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        return runs

    def _in_workers(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int,
                    configs: list[DictConfig], units: list[list[int]],
                    workers: int) -> list[JobReturn]:  # fmt: skip
        """The units in up to `workers` processes; a unit of several jobs is a fused group."""
        log.info(f"Launching {len(job_overrides)} jobs in {len(units)} units, {workers} "
                 f"processes at once ({sum(len(u) > 1 for u in units)} groups fused)")  # fmt: skip
        jobs = [Job(initial_job_idx + i, list(o), c)
                for i, (o, c) in enumerate(zip(job_overrides, configs, strict=True))]  # fmt: skip
        for unit in units:
            if len(unit) > 1:
                jobs[unit[0]].group = [configs[j] for j in unit]
        results = run_units([[jobs[j] for j in unit] for unit in units], workers,
                            self.hydra_context, self.task_function)  # fmt: skip
        return [results[job.idx] for job in jobs]
